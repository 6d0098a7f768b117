"""The /status document: Pyrsia compatibility, our fields, hostile bodies."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import (
    PeerId,
    StatusDocument,
    StatusDocumentError,
    ValidationError,
    WsAddress,
    build_status_document,
    parse_status_document,
)

BOOT = "12D3KooWMD9ynPTdvhWMcdX7mh23Nx7owR3Ja3YvaGGhsrXYU7X9"
OTHER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
# A real Pyrsia boot node's /status body (Pyrsia used plain /tcp, without /ws).
PYRSIA_STATUS = (
    b'{"peers_count":1,"peer_id":"12D3KooWMD9ynPTdvhWMcdX7mh23Nx7owR3Ja3YvaGGhsrXYU7X9",'
    b'"peer_addrs":["/ip4/34.83.215.109/tcp/44000/p2p/'
    b'12D3KooWMD9ynPTdvhWMcdX7mh23Nx7owR3Ja3YvaGGhsrXYU7X9"]}'
)


def _body(**fields: object) -> bytes:
    doc: dict[str, object] = {"peers_count": 0, "peer_id": BOOT, "peer_addrs": []}
    doc.update(fields)
    return json.dumps(doc).encode()


def test_real_pyrsia_document() -> None:
    parsed = parse_status_document(PYRSIA_STATUS)
    assert parsed.document.peer_id == BOOT
    assert parsed.document.peers_count == 1
    assert parsed.document.peer_addrs == (f"/ip4/34.83.215.109/tcp/44000/p2p/{BOOT}",)
    assert parsed.peer_id == PeerId.from_string(BOOT)
    assert parsed.addresses == ()
    assert parsed.rejected == (
        (
            f"/ip4/34.83.215.109/tcp/44000/p2p/{BOOT}",
            "unsupported transport (no /ws or /wss)",
        ),
    )


def test_our_document_round_trips() -> None:
    doc = StatusDocument(
        peer_id=BOOT,
        peers_count=12,
        peer_addrs=(
            f"/ip4/34.83.215.109/tcp/44000/ws/p2p/{BOOT}",
            f"/dns4/b.example/tcp/443/wss/p2p/{OTHER}",
        ),
        nat_status="public",
        nat_mapping="endpoint-independent",
        state="fully_connected",
        uptime_s=12.5,
        connections=3,
        probes_served=40,
        version="trio-autonat/0.1.0",
    )
    body = build_status_document(doc)
    assert body.startswith(b'{"peers_count":12,"peer_id":"' + BOOT.encode() + b'","peer_addrs":[')
    assert b" " not in body.replace(b"trio-autonat/0.1.0", b"")
    parsed = parse_status_document(body)
    assert parsed.document == doc
    assert [str(a) for a in parsed.addresses] == list(doc.peer_addrs)
    assert parsed.rejected == ()


def test_build_omits_unset_fields_and_writes_extra() -> None:
    doc = StatusDocument(
        BOOT, 0, (), extra=(("region", "eu"), ("ports", (1, 2)), ("beta", True), ("x", None))
    )
    assert json.loads(build_status_document(doc)) == {
        "peers_count": 0,
        "peer_id": BOOT,
        "peer_addrs": [],
        "region": "eu",
        "ports": [1, 2],
        "beta": True,
        "x": None,
    }


def test_unknown_fields_are_ignored() -> None:
    body = _body(
        peer_addrs=[f"/ip4/8.8.8.8/tcp/1/ws/p2p/{OTHER}"],
        future={"nested": [1, 2, {"deep": True}]},
        another=[None] * 100,
    )
    parsed = parse_status_document(body)
    assert [str(a) for a in parsed.addresses] == [f"/ip4/8.8.8.8/tcp/1/ws/p2p/{OTHER}"]
    assert parsed.rejected == ()
    assert parsed.document.extra == ()


def test_address_without_peer_id_is_the_boot_nodes_own() -> None:
    parsed = parse_status_document(
        _body(peer_addrs=["/ip4/8.8.8.8/tcp/44000/ws", f"/ip4/8.8.4.4/tcp/1/ws/p2p/{OTHER}"])
    )
    assert [a.peer_id for a in parsed.addresses] == [
        PeerId.from_string(BOOT),
        PeerId.from_string(OTHER),
    ]


def test_every_usable_address_is_kept_in_order_without_duplicates() -> None:
    addrs = [
        f"/ip4/8.8.8.8/tcp/1/ws/p2p/{BOOT}",
        "/ip4/8.8.8.8/tcp/1/ws",  # same as the first once attributed to BOOT
        f"/dns4/a.example/tcp/443/tls/ws/p2p/{OTHER}",
        f"/dns4/A.example/tcp/443/wss/p2p/{OTHER}",  # same, canonically
        f"/ip6/2606:4700::1111/tcp/2/wss/p2p/{OTHER}",
    ]
    parsed = parse_status_document(_body(peer_addrs=addrs))
    assert [str(a) for a in parsed.addresses] == [addrs[0], addrs[3].replace("A.", "a."), addrs[4]]
    assert parsed.rejected == ()


def test_bad_entries_are_reported_and_skipped() -> None:
    parsed = parse_status_document(
        _body(
            peers_count=3,
            peer_addrs=[
                7,
                None,
                ["/ip4/1.2.3.4/tcp/1/ws"],
                {"addr": "x"},
                "not a multiaddr",
                "/ip4/1.2.3.4/udp/1/quic-v1",
                "/ip4/1.2.3.4/tcp/1/ws/p2p/NOTAPEER",
                "/ip4/8.8.8.8/tcp/1/ws",
            ],
        )
    )
    assert [str(a) for a in parsed.addresses] == [f"/ip4/8.8.8.8/tcp/1/ws/p2p/{BOOT}"]
    reasons = dict(parsed.rejected)
    assert len(parsed.rejected) == 7
    assert "got a JSON number" in reasons["<int>"]
    assert "got a JSON null" in reasons["<NoneType>"]
    assert "got a JSON array" in reasons["<list>"]
    assert "got a JSON object" in reasons["<dict>"]
    assert "starts with '/'" in reasons["not a multiaddr"]
    assert "unsupported transport /udp" in reasons["/ip4/1.2.3.4/udp/1/quic-v1"]
    assert "bad peer id" in reasons["/ip4/1.2.3.4/tcp/1/ws/p2p/NOTAPEER"]
    assert parsed.document.peer_addrs == (
        "not a multiaddr",
        "/ip4/1.2.3.4/udp/1/quic-v1",
        "/ip4/1.2.3.4/tcp/1/ws/p2p/NOTAPEER",
        "/ip4/8.8.8.8/tcp/1/ws",
    )


@pytest.mark.parametrize(
    ("fields", "rejected_field"),
    [
        ({"peers_count": "1"}, "peers_count"),
        ({"peers_count": -1}, "peers_count"),
        ({"peers_count": 1.5}, "peers_count"),
        ({"peers_count": True}, "peers_count"),
        ({"peers_count": 10**30}, "peers_count"),
        ({"peer_addrs": "/ip4/1.2.3.4/tcp/1/ws"}, "peer_addrs"),
        ({"peer_addrs": {"a": 1}}, "peer_addrs"),
        ({"nat_status": 1}, "nat_status"),
        ({"version": "v" * 1000}, "version"),
        ({"uptime_s": -1}, "uptime_s"),
        ({"uptime_s": "1"}, "uptime_s"),
        ({"connections": 2.0}, "connections"),
        ({"probes_served": []}, "probes_served"),
    ],
)
def test_wrong_typed_fields_are_reported_not_fatal(
    fields: dict[str, object], rejected_field: str
) -> None:
    parsed = parse_status_document(_body(**fields))
    assert [entry for entry, _ in parsed.rejected] == [rejected_field]
    assert parsed.document.peer_id == BOOT


def test_missing_optional_fields_default() -> None:
    parsed = parse_status_document(b'{"peer_id":"' + BOOT.encode() + b'"}')
    assert parsed.document == StatusDocument(BOOT, 0, ())
    assert parsed.rejected == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2]", "JSON array, not an object"),
        (b'"text"', "JSON string, not an object"),
        (b"null", "JSON null, not an object"),
        (b"{}", "no peer_id"),
        (b'{"peer_id": null}', "no peer_id"),
        (b'{"peer_id": 5}', "peer_id must be a string"),
        (b'{"peer_id": ["x"]}', "peer_id must be a string"),
        (b'{"peer_id": "hello"}', "peer_id is invalid"),
        (b'{"peer_id": "' + BOOT.encode() + b'", "x": NaN}', "not valid JSON"),
        (b'{"peer_id": "' + BOOT.encode() + b'", "x": Infinity}', "not valid JSON"),
        (b'{"peer_id": "' + BOOT.encode() + b'"', "not valid JSON"),
    ],
)
def test_unusable_documents(body: bytes, message: str) -> None:
    with pytest.raises(StatusDocumentError, match=message):
        parse_status_document(body)


# --- hostile input ------------------------------------------------------------------


def test_ten_thousand_addresses_are_bounded() -> None:
    addrs = [f"/ip4/8.8.{i // 250}.{i % 250}/tcp/1/ws" for i in range(10_000)]
    body = _body(peer_addrs=addrs)
    parsed = parse_status_document(body, max_bytes=len(body))
    assert len(parsed.addresses) == 256
    assert len(parsed.document.peer_addrs) == 256
    assert parsed.rejected == (("9744 more entries", "over limit of 256 addresses"),)
    small = parse_status_document(body, max_bytes=len(body), max_addrs=3)
    assert len(small.addresses) == 3
    assert small.rejected == (("9997 more entries", "over limit of 3 addresses"),)


def test_ten_thousand_addresses_exceed_default_body_limit() -> None:
    body = _body(peer_addrs=[f"/ip4/8.8.8.8/tcp/{i}/ws" for i in range(10_000)])
    assert len(body) > 256 * 1024
    with pytest.raises(StatusDocumentError, match="limit is 262144"):
        parse_status_document(body)


def test_ten_megabyte_body_is_refused_before_decoding() -> None:
    body = b'{"peer_id":"' + BOOT.encode() + b'","pad":"' + b"x" * (10 * 1024 * 1024) + b'"}'
    with pytest.raises(StatusDocumentError, match=f"{len(body)} bytes, limit is 262144"):
        parse_status_document(body)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deep_nesting(opener: bytes) -> None:
    depth = 100_000
    closer = b"]" if opener == b"[" else b"}"
    body = opener * depth + b"1" + closer * depth
    with pytest.raises(StatusDocumentError, match="nested too deeply"):
        parse_status_document(body, max_bytes=len(body))


def test_deep_nesting_inside_an_ignored_field() -> None:
    body = b'{"peer_id":"' + BOOT.encode() + b'","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with pytest.raises(StatusDocumentError, match="nested too deeply"):
        parse_status_document(body, max_bytes=len(body))


def test_huge_numbers_do_not_blow_up() -> None:
    digits = b"9" * 100_000  # far beyond int()'s 4300-digit limit
    body = b'{"peer_id":"' + BOOT.encode() + b'","peers_count":' + digits + b',"x":' + digits + b"}"
    parsed = parse_status_document(body)
    assert parsed.document.peers_count == 0
    assert [entry for entry, _ in parsed.rejected] == ["peers_count"]
    body = b'{"peer_id":"' + BOOT.encode() + b'","uptime_s":1e999}'
    assert parse_status_document(body).document.uptime_s is None


def test_long_strings_are_bounded_in_reports() -> None:
    body = _body(peer_addrs=["/" + "x" * 100_000])
    parsed = parse_status_document(body)
    ((entry, reason),) = parsed.rejected
    assert len(entry) <= 100
    assert len(reason) < 300


# --- construction -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"peer_id": ""},
        {"peers_count": -1},
        {"peers_count": True},
        {"peer_addrs": ["x"]},
        {"peer_addrs": (1,)},
        {"nat_status": 3},
        {"uptime_s": float("nan")},
        {"uptime_s": -0.5},
        {"connections": 1.0},
        {"extra": (("peer_id", "x"),)},
        {"extra": (("a", 1), ("a", 2))},
        {"extra": (("a", {"b": 1}),)},
        {"extra": (("a", float("inf")),)},
        {"extra": (("a", ((1,),)),)},
        {"extra": [("a", 1)]},
    ],
)
def test_document_validates(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"peer_id": BOOT, "peers_count": 0, "peer_addrs": ()}
    base.update(kwargs)
    with pytest.raises(ValidationError):
        StatusDocument(**base)  # type: ignore[arg-type]


# --- property tests -------------------------------------------------------------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
_ADDR_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "/ip4/8.8.8.8/tcp/1/ws",
            f"/ip4/8.8.8.8/tcp/1/ws/p2p/{OTHER}",
            f"/ip4/34.83.215.109/tcp/44000/p2p/{BOOT}",
            "/dns4/a.example/tcp/443/wss",
            "/ip6/::1/tcp/1/ws",
        ]
    ),
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "peer_id": st.sampled_from([BOOT, OTHER, "junk"]) | _JSON,
            "peers_count": _JSON,
            "peer_addrs": st.lists(_ADDR_TEXT | _JSON, max_size=10) | _JSON,
            "nat_status": _JSON,
            "uptime_s": _JSON,
            "connections": _JSON,
        },
    ),
    st.integers(0, 8),
)
def test_fuzz_documents(doc: dict[str, object], max_addrs: int) -> None:
    body = json.dumps(doc, allow_nan=False).encode()
    try:
        parsed = parse_status_document(body, max_addrs=max_addrs)
    except StatusDocumentError:
        assert not (isinstance(doc.get("peer_id"), str) and doc["peer_id"] in (BOOT, OTHER))
        return
    assert len(parsed.addresses) <= max_addrs
    assert len(parsed.document.peer_addrs) <= max_addrs
    assert all(isinstance(a, WsAddress) and a.peer_id is not None for a in parsed.addresses)
    # What we parsed, we can serve again, and it parses to the same thing.
    again = parse_status_document(build_status_document(parsed.document), max_addrs=max_addrs)
    assert again.document == parsed.document
    assert again.addresses == parsed.addresses


@given(st.binary(max_size=300))
def test_fuzz_bytes(body: bytes) -> None:
    with contextlib.suppress(StatusDocumentError):
        parse_status_document(body)


@given(_JSON)
def test_fuzz_any_json(value: object) -> None:
    with contextlib.suppress(StatusDocumentError):
        parse_status_document(json.dumps(value).encode())
