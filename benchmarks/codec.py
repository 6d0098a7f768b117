"""Row 5: Identify frame decode and encode, our codec against raw msgpack.

Ours: ``Identify.from_wire(unpack(frame))`` (decode with every check) and
``Identify.encode()`` (encode with the size and value checks). Baseline:
``msgpack.unpackb`` / ``msgpack.packb`` of the same map. Reported as
operations per second; the ratio is ours / baseline (1.0 = as fast as raw msgpack).

Run: ``python benchmarks/codec.py [--seconds S]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import msgpack

from protocols import IDENTIFY_PROTOCOL_ID, AddressPolicy, Identify, Keypair, WsAddress, unpack
from protocols.identify import build_identify

MAX_LOOPS = 5_000_000


def sample() -> Identify:
    """A typical boot node's Identify answer: a few addresses and protocols."""
    keypair = Keypair.generate()
    addrs = [WsAddress.parse(f"/ip4/203.0.113.{i}/tcp/44000/ws") for i in range(1, 4)]
    return build_identify(
        public_key=keypair.public_key, agent_version="trio-autonat/0.1.0", listen_addrs=addrs,
        observed_addr=WsAddress.parse("/ip4/198.51.100.7/tcp/51234/ws"),
        protocols=(IDENTIFY_PROTOCOL_ID, "/ipfs/id/push/1.0.0", "/libp2p/autonat/2/dial-request",
                   "/libp2p/autonat/2/dial-back"),
        policy=AddressPolicy())


def ops_per_second(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (bounded by MAX_LOOPS calls)."""
    batch = 1000
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while calls < MAX_LOOPS:
        for _ in range(batch):
            fn()
        calls += batch
        if time.perf_counter() >= deadline:
            break
    return calls / (time.perf_counter() - start)


def measure(seconds: float = 1.0) -> dict[str, float]:
    message = sample()
    wire = message.to_wire()
    frame = message.encode()
    assert Identify.from_wire(unpack(frame)) == message
    assert msgpack.packb(wire, use_bin_type=True) == frame
    return {
        "decode_ours": ops_per_second(lambda: Identify.from_wire(unpack(frame)), seconds),
        "decode_msgpack": ops_per_second(lambda: msgpack.unpackb(frame, raw=False), seconds),
        "encode_ours": ops_per_second(message.encode, seconds),
        "encode_msgpack": ops_per_second(lambda: msgpack.packb(wire, use_bin_type=True),
                                         seconds),
        "frame_bytes": float(len(frame)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    args = parser.parse_args()
    result = measure(args.seconds)
    for key, value in result.items():
        print(f"{key:16} {value:,.0f}")
    print(f"decode ratio {result['decode_ours'] / result['decode_msgpack']:.3f}")
    print(f"encode ratio {result['encode_ours'] / result['encode_msgpack']:.3f}")


if __name__ == "__main__":
    main()
