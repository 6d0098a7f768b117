"""The plain-language explanation of a NAT profile (:mod:`actors.surfaces._explain`).

Pure: hand-made facts in, key phrases out. Every rule of the hole-punching
table, every reachability and advice branch, and odd or malformed inputs.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.surfaces._explain import ProfileFacts, explain, hole_punching, wrap

EI, AD, APD, ED = ("endpoint-independent", "address-dependent", "address-and-port-dependent",
                   "endpoint-dependent")
PUBLIC_ADDR = "/ip4/198.51.100.4/tcp/44000/ws"
WAN_ADDR = "/ip4/203.0.113.5/tcp/44000/ws"
OBSERVED = "/ip4/203.0.113.5/tcp/51234/ws"


# --- the hole-punching table ---------------------------------------------------------------

@pytest.mark.parametrize(("mapping", "filtering", "udp", "expected"), [
    # TCP
    (ED, "unknown", False, "unlikely"),
    (ED, APD, False, "unlikely"),
    (EI, EI, False, "likely"),
    (EI, AD, False, "likely"),
    (EI, APD, False, "possible"),
    (EI, "unknown", False, "possible"),
    ("none", APD, False, "possible"),   # a stateful firewall, no NAT
    ("none", EI, False, "likely"),
    ("unknown", APD, False, None),
    ("unknown", "unknown", False, None),
    (AD, EI, False, None),              # not a TCP mapping value: not judged
    # UDP
    (AD, EI, True, "unlikely"),
    (APD, APD, True, "unlikely"),
    (EI, EI, True, "likely"),
    (EI, AD, True, "likely"),
    (EI, APD, True, "likely"),
    (EI, "unknown", True, "possible"),
    ("none", "unknown", True, "possible"),
    ("unknown", EI, True, None),
    (ED, EI, True, None),               # not a UDP mapping value: not judged
])
def test_hole_punching_likelihood_follows_mapping_and_filtering(
        mapping: str, filtering: str, udp: bool, expected: str | None) -> None:
    judged = hole_punching(mapping, filtering, udp=udp)
    assert (None if judged is None else judged[0]) == expected
    if judged is not None:
        assert judged[1]  # always says why


# --- whole explanations: inputs -> key phrases ------------------------------------------------

CASES: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    # name: (facts, phrases that must appear, phrases that must not)
    "public-no-nat": (
        dict(nat_status="public", nat_mapping="none", reachable_addrs=(PUBLIC_ADDR,)),
        [f"You are reachable at {PUBLIC_ADDR}: other nodes can dial you directly",
         "There is no NAT on your TCP path",
         "Nothing to forward on your router", "UDP was not measured"],
        ["TCP hole punching", "forward TCP port"]),
    "public-port-forward-two-addrs": (
        dict(nat_status="public", nat_mapping=EI, nat_filtering=EI,
             reachable_addrs=(PUBLIC_ADDR, WAN_ADDR)),
        [f"reachable at {PUBLIC_ADDR} and {WAN_ADDR}", "(endpoint-independent mapping)",
         "connections from anyone get in (endpoint-independent filtering)",
         "Nothing to forward"],
        ["TCP hole punching"]),
    "public-without-address": (
        dict(nat_status="public"),
        ["You are reachable (public), though no address was reported"], []),
    "private-port-restricted-fixed-port": (
        dict(nat_status="private", nat_mapping=EI, nat_filtering=APD,
             unreachable_addrs=(WAN_ADDR,), observed_addrs=(OBSERVED,),
             udp_mapping=EI, udp_filtering=APD, listen_port=44000, lan_ips=("192.168.1.20",)),
        [f"servers could not dial you back at {WAN_ADDR}", "Peers see you at 203.0.113.5.",
         "keeps one external port per local port (endpoint-independent mapping)",
         "only replies from the exact host and port you contacted get in "
         "(address-and-port-dependent filtering)",
         "TCP hole punching (both peers dial each other at once) is possible",
         "simultaneous open",
         "UDP: one public port for every destination",
         "UDP hole punching (both peers send to each other at once) is likely",
         "forward TCP port 44000 on your router to this machine (LAN IP 192.168.1.20)"],
        ["random port", "UDP was not measured"]),
    "private-many-addresses": (  # a symmetric NAT leaves one address per connection
        dict(nat_status="private", nat_mapping=ED,
             unreachable_addrs=tuple(f"/ip4/203.0.113.5/tcp/{p}/ws" for p in (1, 2, 3, 4)),
             observed_addrs=("/ip4/203.0.113.5/tcp/1/ws", "/ip4/203.0.113.6/tcp/2/ws")),
        ["could not dial you back at /ip4/203.0.113.5/tcp/1/ws, /ip4/203.0.113.5/tcp/2/ws "
         "and 2 more.", "Peers see you at 203.0.113.5 and 203.0.113.6."], ["tcp/3/ws"]),
    "private-address-restricted": (
        dict(nat_status="private", nat_mapping=EI, nat_filtering=AD),
        ["only hosts you have contacted get in (address-dependent filtering)",
         "TCP hole punching (both peers dial each other at once) is likely"], []),
    "private-full-cone-port-not-mapped": (
        dict(nat_status="private", nat_mapping=EI, nat_filtering=EI),
        ["connections from anyone get in", "TCP hole punching", "is likely",
         "forward the TCP port your node listens on (44000 unless you set --listen)"], []),
    "private-symmetric": (
        dict(nat_status="private", nat_mapping=ED, udp_mapping=APD, udp_filtering=APD),
        ["a new external port (endpoint-dependent mapping: a symmetric NAT)",
         "cannot be measured on a NAT that does not keep its mappings",
         "TCP hole punching (both peers dial each other at once) is unlikely",
         "expect to need a relay",
         "UDP: a new public port per destination (address-and-port-dependent mapping",
         "UDP hole punching (both peers send to each other at once) is unlikely",
         "to this machine.",
         "This probe listened on a random port",
         "--listen /ip4/0.0.0.0/tcp/44000/ws"], ["LAN IP"]),
    "private-firewall-no-nat": (
        dict(nat_status="private", nat_mapping="none", nat_filtering=APD, listen_port=44000),
        ["There is no NAT on your TCP path", "a firewall drops inbound connections",
         "allow inbound TCP port 44000", "TCP hole punching", "is possible"],
        ["on your router", "random port"]),
    "private-mapping-unknown": (
        dict(nat_status="private"),
        ["The kind of NAT is not known (telling needs two servers on distinct IPs",
         "measuring it needs two servers with a second address",
         "Whether TCP hole punching can work is not known: the mapping is unknown",
         "To be reachable, forward the TCP port your node listens on"], []),
    "private-running-node-no-random-port-hint": (
        dict(nat_status="private", nat_mapping=EI, one_shot=False),
        ["forward the TCP port your node listens on"], ["This probe"]),
    "unknown-with-reason": (
        dict(reason="no AutoNAT server answered (2 servers asked)"),
        ["Whether you are reachable is not known yet: no AutoNAT server answered "
         "(2 servers asked).",
         "check that the boot URLs answer", "--timeout"],
        ["TCP hole punching", "The kind of NAT", "forward"]),
    "unknown-without-reason": (
        dict(),
        ["not known yet: no two servers have agreed on an address yet"], ["forward"]),
    "unknown-running-node": (
        dict(one_shot=False),
        ["The node keeps probing: ask again later"], ["--timeout"]),
    "unknown-but-mapping-known": (
        dict(nat_mapping=ED),
        ["not known yet", "symmetric NAT", "TCP hole punching", "unlikely"], ["forward"]),
    "udp-mapping-without-filtering": (
        dict(nat_status="public", udp_mapping="none"),
        ["UDP: no NAT (the STUN server saw your own address)",
         "the UDP filtering is not known (the STUN server has no second address)",
         "UDP hole punching (both peers send to each other at once) is possible"], []),
    "udp-open": (
        dict(nat_status="public", udp_mapping="none", udp_filtering=EI),
        ["UDP: no NAT", "is likely: nothing translates or filters your address"], []),
    "udp-full-cone": (
        dict(nat_status="public", udp_mapping=EI, udp_filtering=EI),
        ["UDP: one public port for every destination",
         "packets from anyone get in (endpoint-independent filtering)",
         "UDP hole punching (both peers send to each other at once) is likely: once a "
         "mapping exists, anyone can reach it"],
        ["connections from anyone"]),
    "udp-filtering-without-mapping": (  # odd: never produced, but said honestly
        dict(nat_status="public", udp_filtering=AD),
        ["UDP: only hosts you have contacted get in", "the UDP mapping is not known",
         "nothing can be said about hole punching over UDP"], ["UDP hole punching ("]),
    "public-port-forward-hairpins": (
        dict(nat_status="public", nat_mapping=EI, reachable_addrs=(WAN_ADDR,),
             hairpinning="true"),
        ["Your router hairpins: computers on your own LAN can reach this node at its public "
         "address too."], ["does not hairpin"]),
    "public-port-forward-no-hairpin": (
        dict(nat_status="public", nat_mapping=EI, reachable_addrs=(WAN_ADDR,),
             hairpinning="false", lan_ips=("192.168.1.2",)),
        ["Your router does not hairpin: computers on your own LAN cannot reach this node at "
         "its public address; they must use its LAN address (192.168.1.2)."], []),
    "hairpinning-unknown-says-nothing": (
        dict(nat_status="public", nat_mapping=EI, reachable_addrs=(WAN_ADDR,)),
        ["You are reachable at"], ["hairpin"]),
    "public-yet-symmetric": (  # a port forward on a symmetric NAT: reachable, punching moot
        dict(nat_status="public", nat_mapping=ED, reachable_addrs=(WAN_ADDR,)),
        ["You are reachable at", "symmetric NAT", "Nothing to forward"], ["TCP hole punching"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_explanation_says_what_the_profile_means(name: str) -> None:
    facts, present, absent = CASES[name]
    text = " ".join(explain(ProfileFacts(**facts)))
    for phrase in present:
        assert phrase in text, (phrase, text)
    for phrase in absent:
        assert phrase not in text, (phrase, text)


def test_explanation_is_a_few_sentences_in_a_fixed_order() -> None:
    lines = explain(ProfileFacts(nat_status="private", nat_mapping=EI, nat_filtering=APD,
                                 udp_mapping=EI, udp_filtering=APD, listen_port=44000))
    assert [line.split(" ")[0] for line in lines] == ["You", "You", "TCP", "UDP:", "UDP", "To"]
    assert all(line.endswith(".") for line in lines)
    assert 3 <= len(explain(ProfileFacts())) <= 6


# --- facts from a document ---------------------------------------------------------------------

def test_facts_from_a_probe_result() -> None:
    result = {"nat_status": "private", "nat_mapping": EI, "nat_filtering": APD,
              "reachable_addrs": [], "unreachable_addrs": [WAN_ADDR],
              "observed_addrs": [OBSERVED], "udp": {"mapping": EI, "filtering": AD},
              "reason": None, "servers": ["x"], "hairpinning": False}
    facts = ProfileFacts.from_document(result, listen_port=44000, lan_ips=("10.0.0.2",))
    assert facts == ProfileFacts(nat_status="private", nat_mapping=EI, nat_filtering=APD,
                                 udp_mapping=EI, udp_filtering=AD, hairpinning="false",
                                 unreachable_addrs=(WAN_ADDR,), observed_addrs=(OBSERVED,),
                                 listen_port=44000, lan_ips=("10.0.0.2",))


@pytest.mark.parametrize("doc", [
    {},
    {"nat_status": "maybe", "nat_mapping": 3, "nat_filtering": None, "udp": "x",
     "reachable_addrs": "not a list", "observed_addrs": [1, "", None], "reason": "",
     "hairpinning": "true"},
    {"nat_mapping": APD, "nat_filtering": ED, "udp": {"mapping": ED, "filtering": "none"},
     "hairpinning": 1},
], ids=["empty", "wrong-types", "values-of-the-other-kind"])
def test_malformed_or_unknown_values_read_as_unknown(doc: dict[str, Any]) -> None:
    facts = ProfileFacts.from_document(doc, listen_port=0)
    assert facts == ProfileFacts()  # port 0 is no fixed port
    assert "not known yet" in explain(facts)[0]


# --- the terminal layout ---------------------------------------------------------------------

def test_wrap_indents_and_never_breaks_an_address() -> None:
    long_addr = "/ip6/2001:db8:1234:5678:9abc:def0:1234:5678/tcp/44000/ws/p2p/" + "x" * 40
    lines = wrap([f"You are reachable at {long_addr}: other nodes can dial you directly.",
                  "Short."], width=60)
    assert lines[0].startswith("  You are reachable")
    assert any(line.strip() == long_addr + ":" for line in lines)
    assert all(line.startswith("    ") for line in lines[1:-1])
    assert lines[-1] == "  Short."
    assert all(len(line) <= 60 for line in lines if long_addr not in line)
