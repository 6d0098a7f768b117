"""The NAT models of protocols.sim against their definitions (RFC 4787 / 5780)."""

from __future__ import annotations

import random

import pytest

from protocols.sim import (
    NAT_TYPES,
    Deliver,
    Drop,
    Filtering,
    Mapping,
    NatBehaviour,
    NatBox,
    Reject,
    Unsolicited,
)

WAN = "10.1.0.1"
HOST = ("192.168.1.2", 44000)
SERVER = ("10.0.0.1", 44000)
SAME_IP_OTHER_PORT = ("10.0.0.1", 5000)
OTHER_IP = ("10.9.9.9", 44000)


def _box(mapping: Mapping = Mapping.ENDPOINT_INDEPENDENT,
         filtering: Filtering = Filtering.ADDRESS_AND_PORT_DEPENDENT, **kw: object) -> NatBox:
    return NatBox(NatBehaviour(mapping, filtering, **kw), WAN, random.Random(7))  # type: ignore[arg-type]


# --- filtering: which inbound flow passes, for every mapping x filtering pair ----------------

FILTER_TABLE = {
    # filtering: (from the contacted endpoint, from its IP on another port, from another IP)
    Filtering.ENDPOINT_INDEPENDENT: (True, True, True),
    Filtering.ADDRESS_DEPENDENT: (True, True, False),
    Filtering.ADDRESS_AND_PORT_DEPENDENT: (True, False, False),
    Filtering.CLOSED: (False, False, False),
}


@pytest.mark.parametrize("mapping", list(Mapping))
@pytest.mark.parametrize("filtering", list(FILTER_TABLE))
def test_which_inbound_flow_passes(mapping: Mapping, filtering: Filtering) -> None:
    box = _box(mapping, filtering)
    public = box.outbound(HOST, SERVER, 0.0)
    got = tuple(isinstance(box.inbound(remote, public, 1.0), Deliver)
                for remote in (SERVER, SAME_IP_OTHER_PORT, OTHER_IP))
    assert got == FILTER_TABLE[filtering]
    for remote, passes in zip((SERVER, SAME_IP_OTHER_PORT, OTHER_IP), got, strict=True):
        verdict = box.inbound(remote, public, 1.0)
        assert verdict == Deliver(HOST) if passes else isinstance(verdict, Drop)


def test_nothing_passes_before_the_host_sent_anything() -> None:
    box = _box(filtering=Filtering.ENDPOINT_INDEPENDENT)
    assert isinstance(box.inbound(SERVER, (WAN, 44000), 0.0), Drop)


# --- mapping: which destinations share a public port -------------------------------------------

MAPPING_TABLE = {
    # mapping: (SERVER vs same IP other port, SERVER vs other IP) share the public endpoint?
    Mapping.ENDPOINT_INDEPENDENT: (True, True),
    Mapping.ADDRESS_DEPENDENT: (True, False),
    Mapping.ADDRESS_AND_PORT_DEPENDENT: (False, False),
}


@pytest.mark.parametrize("mapping", list(MAPPING_TABLE))
@pytest.mark.parametrize("preserve", [True, False])
def test_which_destinations_share_a_mapping(mapping: Mapping, preserve: bool) -> None:
    box = _box(mapping, port_preservation=preserve)
    first = box.outbound(HOST, SERVER, 0.0)
    same_ip = box.outbound(HOST, SAME_IP_OTHER_PORT, 0.0)
    other_ip = box.outbound(HOST, OTHER_IP, 0.0)
    assert first[0] == same_ip[0] == other_ip[0] == WAN
    assert (first == same_ip, first == other_ip) == MAPPING_TABLE[mapping]


def test_port_preservation_keeps_the_port_while_it_is_free() -> None:
    box = _box()
    assert box.outbound(HOST, SERVER, 0.0) == (WAN, 44000)
    neighbour = ("192.168.1.3", 44000)  # same private port, another LAN host: taken
    port = box.outbound(neighbour, SERVER, 0.0)[1]
    assert port != 44000
    assert box.inbound(SERVER, (WAN, port), 0.0) == Deliver(neighbour)


def test_random_ports_repeat_for_a_seed() -> None:
    def ports(seed: int) -> list[int]:
        box = NatBox(NatBehaviour(Mapping.ADDRESS_AND_PORT_DEPENDENT, port_preservation=False),
                     WAN, random.Random(seed))
        return [box.outbound(HOST, ("10.0.0.1", 1000 + i), 0.0)[1] for i in range(5)]
    assert ports(1) == ports(1)
    assert ports(1) != ports(2)
    assert 44000 not in ports(1) or len(set(ports(1))) == 5


# --- timeouts ---------------------------------------------------------------------------------


def test_a_mapping_expires_after_its_timeout_without_outbound_use() -> None:
    box = _box(filtering=Filtering.ENDPOINT_INDEPENDENT, mapping_timeout=30.0)
    public = box.outbound(HOST, SERVER, 0.0)
    assert box.inbound(OTHER_IP, public, 20.0) == Deliver(HOST)  # inbound does not refresh
    box.outbound(HOST, SERVER, 25.0)  # outbound does
    assert box.inbound(OTHER_IP, public, 54.9) == Deliver(HOST)
    assert isinstance(box.inbound(OTHER_IP, public, 55.0), Drop)
    assert box.bindings() == []


def test_time_running_backwards_is_an_error() -> None:
    box = _box()
    box.outbound(HOST, SERVER, 5.0)
    with pytest.raises(ValueError, match="backwards"):
        box.outbound(HOST, SERVER, 4.0)


def test_a_flow_to_another_boxs_address_is_an_error() -> None:
    with pytest.raises(ValueError, match="routed to the box"):
        _box().inbound(SERVER, ("10.1.0.2", 44000), 0.0)


# --- drop or reject, hairpinning, firewalls ---------------------------------------------------


def test_reject_answers_where_drop_is_silent() -> None:
    box = _box(unsolicited=Unsolicited.REJECT)
    public = box.outbound(HOST, SERVER, 0.0)
    assert isinstance(box.inbound(OTHER_IP, public, 0.0), Reject)


def test_hairpin_is_translated_then_filtered() -> None:
    box = _box(filtering=Filtering.ENDPOINT_INDEPENDENT, hairpin=True)
    public = box.outbound(HOST, SERVER, 0.0)
    neighbour = ("192.168.1.3", 50000)
    seen_from, verdict = box.hairpin(neighbour, public, 1.0)
    assert verdict == Deliver(HOST)
    assert seen_from is not None and seen_from[0] == WAN  # the external source (REQ-9)


def test_without_hairpinning_the_lan_cannot_use_the_public_address() -> None:
    box = _box(filtering=Filtering.ENDPOINT_INDEPENDENT, hairpin=False)
    public = box.outbound(HOST, SERVER, 0.0)
    seen_from, verdict = box.hairpin(("192.168.1.3", 50000), public, 1.0)
    assert seen_from is None and isinstance(verdict, Drop)


def test_a_firewall_translates_nothing_and_refuses_new_inbound_flows() -> None:
    host = ("10.2.0.1", 44000)
    box = NatBox(NatBehaviour(filtering=Filtering.CLOSED, unsolicited=Unsolicited.REJECT,
                              translates=False), host[0], random.Random(1))
    assert box.outbound(host, SERVER, 0.0) == host
    assert isinstance(box.inbound(SERVER, host, 0.0), Reject)


def test_a_forwarded_port_admits_everyone_and_never_expires() -> None:
    box = _box(mapping_timeout=10.0)
    box.forward(44000, HOST)
    assert box.inbound(OTHER_IP, (WAN, 44000), 0.0) == Deliver(HOST)  # before any outbound
    assert box.outbound(HOST, SERVER, 1.0) == (WAN, 44000)  # the forwarded port, preserved
    assert box.inbound(OTHER_IP, (WAN, 44000), 500.0) == Deliver(HOST)
    assert box.outbound(("192.168.1.3", 44000), SERVER, 500.0)[1] != 44000  # not stolen


def test_a_firewall_cannot_map_dependently() -> None:
    with pytest.raises(ValueError):
        NatBehaviour(Mapping.ADDRESS_DEPENDENT, translates=False)


def test_the_catalog_names_are_unique_and_public_has_no_box() -> None:
    names = [kind.name for kind in NAT_TYPES]
    assert len(names) == len(set(names))
    assert {kind.name for kind in NAT_TYPES if kind.behaviour is None} == {"public"}
