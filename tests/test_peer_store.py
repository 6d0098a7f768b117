"""Peer store (de)serialisation: round trips, hostile files, caps."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import (
    PEER_STORE_VERSION,
    Keypair,
    PeerId,
    PeerRecord,
    PeerStoreError,
    WsAddress,
    decode_peer_store,
    encode_peer_store,
)
from protocols.node._peer_store import MAX_REASONS

PEERS = [Keypair.from_seed(bytes([n]) * 32).peer_id for n in range(1, 9)]


def record(peer: PeerId, n: int = 1, **changes: object) -> PeerRecord:
    fields: dict[str, object] = {
        "peer_id": peer,
        "addrs": (WsAddress(f"203.0.113.{n}", "ip4", 4000 + n, n % 2 == 0, peer),),
        "first_seen": 1_700_000_000.0 + n,
        "last_seen": 1_700_000_100.5 + n,
        "agent_version": f"trio-autonat/{n}",
        "protocols": ("/ipfs/id/1.0.0", "/libp2p/autonat/2/dial-request"),
        "sources": ("https://boot.example/status",),
        "from_bootstrap": n % 2 == 1,
    }
    fields.update(changes)
    return PeerRecord(**fields)  # type: ignore[arg-type]


def document(*entries: object, version: object = PEER_STORE_VERSION) -> bytes:
    return json.dumps({"version": version, "peers": list(entries)}).encode()


def entry(peer: PeerId, **changes: object) -> dict[str, object]:
    value: dict[str, object] = {
        "peer_id": str(peer),
        "addrs": [f"/ip4/203.0.113.9/tcp/4001/ws/p2p/{peer}"],
        "first_seen": 10,
        "last_seen": 20.5,
    }
    value.update(changes)
    return value


# --- round trips ----------------------------------------------------------------


def test_round_trip() -> None:
    records = [record(peer, n) for n, peer in enumerate(PEERS, start=1)]
    data = encode_peer_store(records)
    assert decode_peer_store(data) == (records, [])
    obj = json.loads(data)
    assert obj["version"] == 1
    assert obj["peers"][0] == {
        "peer_id": str(PEERS[0]),
        "addrs": [f"/ip4/203.0.113.1/tcp/4001/ws/p2p/{PEERS[0]}"],
        "agent_version": "trio-autonat/1",
        "protocols": ["/ipfs/id/1.0.0", "/libp2p/autonat/2/dial-request"],
        "first_seen": 1700000001.0,
        "last_seen": 1700000101.5,
        "sources": ["https://boot.example/status"],
        "from_bootstrap": True,
    }


def test_empty_store_round_trips() -> None:
    assert decode_peer_store(encode_peer_store([])) == ([], [])


_texts = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)


@st.composite
def records(draw: st.DrawFn) -> PeerRecord:
    peer = draw(st.sampled_from(PEERS))
    ports = draw(st.lists(st.integers(0, 65535), min_size=1, max_size=5, unique=True))
    first = draw(st.floats(-1e12, 1e12, allow_nan=False))
    return PeerRecord(
        peer_id=peer,
        addrs=tuple(WsAddress("2001:db8::1", "ip6", port, True, peer) for port in ports),
        first_seen=first,
        last_seen=first + draw(st.floats(0, 1e6)),
        agent_version=draw(st.text(max_size=30)),
        protocols=tuple(draw(st.lists(_texts, max_size=4))),
        sources=tuple(draw(st.lists(_texts, max_size=4))),
        from_bootstrap=draw(st.booleans()),
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(records(), max_size=8, unique_by=lambda rec: rec.peer_id))
def test_round_trip_property(recs: list[PeerRecord]) -> None:
    assert decode_peer_store(encode_peer_store(recs)) == (recs, [])


def test_encoder_stays_within_max_bytes_and_keeps_the_first_records() -> None:
    records_ = [record(peer, n) for n, peer in enumerate(PEERS, start=1)]
    full = encode_peer_store(records_)
    limit = len(full) // 2
    data = encode_peer_store(records_, max_bytes=limit)
    assert len(data) <= limit
    decoded, reasons = decode_peer_store(data, max_bytes=limit)
    assert 0 < len(decoded) < len(records_)
    assert decoded == records_[: len(decoded)]
    assert reasons == []


# --- the document as a whole -----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"{",
        b"[]",
        b'"peers"',
        b"null",
        b'{"peers": []}',
        b'{"version": "1", "peers": []}',
        b'{"version": true, "peers": []}',
        b'{"version": 2, "peers": []}',
        b'{"version": 1.0, "peers": []}',
        b'{"version": 1, "peers": {}}',
        b'{"version": 1}',
        b'{"version": 1, "peers": [], "x": NaN}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_unusable_documents_raise(data: bytes) -> None:
    with pytest.raises(PeerStoreError):
        decode_peer_store(data, max_bytes=1_000_000)


def test_too_big_is_refused_before_parsing() -> None:
    data = encode_peer_store([record(PEERS[0])])
    with pytest.raises(PeerStoreError, match="limit"):
        decode_peer_store(data, max_bytes=len(data) - 1)


def test_unknown_fields_are_ignored() -> None:
    data = json.dumps(
        {"version": 1, "future": [1, 2], "peers": [entry(PEERS[0], colour="blue")]}
    ).encode()
    [rec], reasons = decode_peer_store(data)
    assert rec.peer_id == PEERS[0] and reasons == []
    assert (rec.agent_version, rec.protocols, rec.sources, rec.from_bootstrap) == (
        "",
        (),
        (),
        False,
    )


# --- single entries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("not an object", "expected an object"),
        (entry(PEERS[1], peer_id="QmNotAPeer"), "peer id"),
        (entry(PEERS[1], peer_id=7), "'peer_id' must be a string"),
        (entry(PEERS[1], addrs=[]), "no usable address"),
        (entry(PEERS[1], addrs="/ip4/1.2.3.4/tcp/1/ws"), "'addrs' must be a list"),
        (entry(PEERS[1], addrs=["/ip4/1.2.3.4/udp/1/quic"]), "no usable address"),
        (entry(PEERS[1], first_seen="yesterday"), "'first_seen'"),
        (entry(PEERS[1], last_seen=True), "'last_seen'"),
        (entry(PEERS[1], last_seen=1e400), "'last_seen'"),
        (entry(PEERS[1], last_seen=int("9" * 400)), "'last_seen'"),
        (entry(PEERS[1], first_seen=30), "before first_seen"),
        (entry(PEERS[1], protocols=["ok", 5]), "'protocols'"),
        (entry(PEERS[1], sources="url"), "'sources'"),
        (entry(PEERS[1], agent_version=None), "'agent_version'"),
        (entry(PEERS[1], from_bootstrap="yes"), "'from_bootstrap'"),
        (entry(PEERS[1], protocols=["p"] * 100), "protocols has 100 entries"),
    ],
)
def test_bad_entries_are_skipped_with_a_reason(bad: object, why: str) -> None:
    data = document(entry(PEERS[0]), bad, entry(PEERS[2])).replace(b"Infinity", b"1e400")
    recs, reasons = decode_peer_store(data)
    assert [rec.peer_id for rec in recs] == [PEERS[0], PEERS[2]]
    assert any(why in reason and "peers[1]" in reason for reason in reasons), reasons


def test_bad_addresses_are_dropped_but_the_entry_kept() -> None:
    addrs = [
        "/ip4/1.2.3.4/tcp/1/ws",  # no peer id: attributed to the entry's peer
        "/ip4/1.2.3.4/udp/1/quic",
        f"/ip4/1.2.3.5/tcp/1/ws/p2p/{PEERS[3]}",  # somebody else's
        42,
        "/ip4/1.2.3.4/tcp/1/ws",  # duplicate, silently merged
    ]
    [rec], reasons = decode_peer_store(document(entry(PEERS[0], addrs=addrs)))
    assert rec.addrs == (WsAddress("1.2.3.4", "ip4", 1, False, PEERS[0]),)
    assert len(reasons) == 3
    assert all(reason.startswith("peers[0]: address skipped") for reason in reasons)


def test_duplicate_peer_ids_keep_the_first() -> None:
    data = document(entry(PEERS[0], last_seen=50), entry(PEERS[0], last_seen=60))
    [rec], reasons = decode_peer_store(data)
    assert rec.last_seen == 50
    assert reasons == [f"peers[1]: duplicate of an earlier entry for {PEERS[0]}"]


# --- caps ------------------------------------------------------------------------------------


def test_entries_beyond_max_peers_are_counted_not_parsed() -> None:
    data = document(*(entry(peer) for peer in PEERS))
    recs, reasons = decode_peer_store(data, max_peers=3)
    assert [rec.peer_id for rec in recs] == PEERS[:3]
    assert reasons == ["5 entries beyond the limit of 3 ignored"]


def test_reasons_are_bounded() -> None:
    data = document(*([1] * 500))
    recs, reasons = decode_peer_store(data, max_peers=1000)
    assert recs == []
    assert len(reasons) == MAX_REASONS + 1
    assert reasons[-1] == f"... and {500 - MAX_REASONS} more problems"


# --- fuzz --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_records_or_peer_store_error(data: bytes) -> None:
    try:
        recs, reasons = decode_peer_store(data)
    except PeerStoreError:
        return
    assert all(isinstance(rec, PeerRecord) for rec in recs)
    assert all(isinstance(reason, str) for reason in reasons)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=4)
    ),
    max_leaves=20,
)
_entry_values = st.fixed_dictionaries(
    {},
    optional={
        "peer_id": st.sampled_from([str(p) for p in PEERS]) | _json,
        "addrs": st.lists(
            st.sampled_from([f"/ip4/1.2.3.4/tcp/9/ws/p2p/{PEERS[0]}", "/dns/x.example/tcp/1/wss"])
            | _json,
            max_size=4,
        )
        | _json,
        "first_seen": st.floats() | _json,
        "last_seen": st.floats() | _json,
        "protocols": _json,
        "sources": _json,
        "agent_version": _json,
        "from_bootstrap": _json,
    },
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_entry_values | _json, max_size=6))
def test_structured_garbage_is_skipped_never_raises(entries: list[object]) -> None:
    data = json.dumps({"version": 1, "peers": entries}).encode()  # NaN: the file is refused
    try:
        recs, _reasons = decode_peer_store(data)
    except PeerStoreError:
        return
    for rec in recs:  # whatever survived is a valid record and round trips
        assert decode_peer_store(encode_peer_store([rec])) == ([rec], [])
