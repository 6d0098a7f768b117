"""Two nodes in one Trio program: connect them and print what each learned.

Run it with ``python examples/two_nodes.py`` (about a tenth of a second).

Both nodes listen on loopback (port 0 = any free port) with an address
policy that accepts loopback addresses, which a real deployment would not.
Node B connects to node A; the handshake authenticates both, Identify runs
in both directions, and each node's StatusTracker records the other peer,
its listen addresses, and the address it observed us at.
"""

from __future__ import annotations

import trio

from actors import configure_logging, open_node
from protocols import AddressPolicy, NodeConfig, NodeSnapshot

LOOPBACK_LAB = AddressPolicy(allow_loopback=True)


def describe(name: str, snap: NodeSnapshot) -> str:
    lines = [f"node {name} {snap.peer_id} ({snap.lifecycle.value})"]
    for peer in snap.peers:
        addrs = ", ".join(str(a) for a in peer.addrs)
        lines.append(f"  knows {peer.peer_id} ({peer.agent_version}) at {addrs}")
    for obs in snap.observed_addrs:
        lines.append(f"  {obs.observer} sees us at {obs.observed}")
    return "\n".join(lines)


async def main() -> list[NodeSnapshot]:
    config_a = NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws",), policy=LOOPBACK_LAB)
    config_b = NodeConfig(listen=("/ip4/127.0.0.2/tcp/0/ws",), policy=LOOPBACK_LAB)
    with trio.fail_after(10):
        async with open_node(config_a) as a, open_node(config_b) as b:
            await b.connect(a.listen_addrs[0])
            snaps = [await node.wait_for(lambda s: bool(s.observed_addrs)
                                         and all(p.agent_version for p in s.peers))
                     for node in (a, b)]
    for name, snap in zip("AB", snaps, strict=True):
        print(describe(name, snap))
    return snaps


if __name__ == "__main__":
    configure_logging("console", level="warning")  # logs go to stderr; keep them quiet
    trio.run(main)
