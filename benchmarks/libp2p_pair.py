"""py-libp2p baseline of row 6: two hosts on 127.0.0.1 in one process, connect, identify.

Runs in its own virtualenv (``pip install libp2p``), never in ours; the
benchmark runner times the whole process. Exit 0 after a parsed Identify
answer; bounded by a 60 s deadline.
"""

from __future__ import annotations

import multiaddr
import trio
from libp2p import new_host
from libp2p.identity.identify.identify import ID as IDENTIFY_ID
from libp2p.identity.identify.identify import identify_handler_for, parse_identify_response
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.utils.varint import read_length_prefixed_protobuf

LISTEN = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


async def main() -> None:
    with trio.fail_after(60):
        server, client = new_host(), new_host()
        server.set_stream_handler(IDENTIFY_ID, identify_handler_for(server, use_varint_format=True))
        async with server.run(listen_addrs=LISTEN), client.run(listen_addrs=LISTEN):
            addr = server.get_addrs()[0]
            info = info_from_p2p_addr(addr)
            await client.connect(info)
            stream = await client.new_stream(info.peer_id, (IDENTIFY_ID,))
            response = await read_length_prefixed_protobuf(stream, use_varint_format=True)
            await stream.close()
            identify = parse_identify_response(response)
            assert identify.agent_version, identify
            print(f"identified {info.peer_id} agent={identify.agent_version}")


if __name__ == "__main__":
    trio.run(main)
