"""The UDP oracle's parts that need no lab: reading coturn's output, judging agreement.

The oracle itself runs in every UDP scenario of the NAT lab (``test_nat_lab``,
``test_udp_oracle_agrees``); these tests pin how its answers are read and
compared, with coturn's real output (``turnutils_natdiscovery -m -f``, coturn
4.6.1, captured in the lab) as input.
"""

from __future__ import annotations

import pytest

from .oracle import OracleResult, UdpAnswer, parse_natdiscovery
from .topologies import SCENARIOS_BY_KEY, Expectation

EI, AD, APD = "endpoint-independent", "address-dependent", "address-and-port-dependent"

_MAPPING_HEAD = """
-= Mapping Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 198.51.100.50:3478
0: : IPv4. Other addr: : 192.0.2.50:3479
0: : IPv4. UDP reflexive addr: 198.51.100.30:40109
0: : IPv4. Local addr: : 192.168.1.2:40109
"""

_MASQUERADE = _MAPPING_HEAD + """
========================================
NAT with Endpoint Independent Mapping!
========================================

-= Filtering Behavior Discovery =-

========================================
RFC 5780 response 3
0: : IPv4. UDP reflexive addr: 198.51.100.30:52713
0: : IPv4. Local addr: : 192.168.1.2:52713
STUN receive timeout..
STUN receive timeout..

========================================
NAT with Address and Port Dependent Filtering!
========================================
"""

_PUBLIC = """
-= Mapping Behavior Discovery =-

========================================
RFC 5780 response 1
0: : IPv4. UDP reflexive addr: 198.51.100.20:32954
0: : IPv4. Local addr: : 198.51.100.20:32954

========================================
No NAT! (Endpoint Independent Mapping)
========================================

========================================
RFC 5780 response 2
0: : IPv4. UDP reflexive addr: 198.51.100.20:32954

========================================
NAT with Endpoint Independent Mapping!
========================================

-= Filtering Behavior Discovery =-

========================================
No NAT! (Endpoint Independent Mapping)
========================================

========================================
NAT with Endpoint Independent Filtering!
========================================
"""

_SYMMETRIC = _MAPPING_HEAD + """
========================================
NAT with Address and Port Dependent Mapping!
========================================

-= Filtering Behavior Discovery =-
STUN receive timeout..

========================================
NAT with Address Dependent Filtering!
========================================
"""

_SILENT = """
-= Mapping Behavior Discovery =-
STUN receive timeout..

-= Filtering Behavior Discovery =-
STUN receive timeout..
"""


@pytest.mark.parametrize(("output", "mapping", "filtering"), [
    (_MASQUERADE, EI, APD),
    (_PUBLIC, "none", EI),  # "No NAT!" wins over the EIM line coturn prints after it
    (_SYMMETRIC, APD, AD),  # "Address Dependent" is not read into "Address and Port ..."
    (_SILENT, "unknown", "unknown"),
    ("", "unknown", "unknown"),
])
def test_natdiscovery_output_in_our_vocabulary(output: str, mapping: str,
                                               filtering: str) -> None:
    assert parse_natdiscovery(output) == UdpAnswer(mapping, filtering)


def test_a_filtering_verdict_in_the_mapping_section_is_not_taken_for_filtering() -> None:
    text = _MASQUERADE.replace("-= Filtering Behavior Discovery =-", "")
    assert parse_natdiscovery(text).filtering == "unknown"


MASQ = Expectation("private", EI, False, APD, udp_mapping=EI, udp_filtering=APD)


def _oracle(coturn: UdpAnswer, via_ours: UdpAnswer, ours: UdpAnswer) -> OracleResult:
    return OracleResult(coturn_vs_coturn=coturn, coturn_vs_ours=via_ours, ours_vs_coturn=ours)


def test_the_oracle_passes_when_all_agree_with_the_expectation() -> None:
    right = UdpAnswer(EI, APD)
    assert _oracle(right, right, right).problems(MASQ) == []


def test_the_oracle_names_each_disagreement() -> None:
    right, wrong = UdpAnswer(EI, APD), UdpAnswer(EI, EI)
    problems = _oracle(right, wrong, right).problems(MASQ)
    assert len(problems) == 2, problems
    assert "against our server" in problems[0]
    assert problems[1] == "coturn vs ours filtering 'endpoint-independent', expected " \
                          "'address-and-port-dependent'"
    problems = _oracle(right, right, wrong).problems(MASQ)
    assert "against coturn's server: ours" in problems[0] and len(problems) == 2


def test_the_oracle_fails_when_all_agree_on_a_wrong_profile() -> None:
    wrong = UdpAnswer(APD, APD)
    problems = _oracle(wrong, wrong, wrong).problems(MASQ)
    assert problems == [f"{name} mapping {APD!r}, expected {EI!r}"
                        for name in ("coturn vs coturn", "coturn vs ours", "ours vs coturn")]


def test_a_failed_client_is_a_problem_even_with_the_right_profile() -> None:
    right = UdpAnswer(EI, APD)
    problems = _oracle(right, right, UdpAnswer(EI, APD, error="exit 1")).problems(MASQ)
    assert problems == ["ours vs coturn: exit 1"]


def test_expectation_judges_the_probes_udp_object() -> None:
    assert MASQ.udp_problems({"mapping": EI, "filtering": APD}) == []
    assert MASQ.udp_problems({"mapping": EI, "filtering": "unknown"}) == [
        f"udp filtering 'unknown', expected {APD!r}"]
    assert len(MASQ.udp_problems(None)) == 2
    unasserted = Expectation("public", "none", True)
    assert not unasserted.asserts_udp and unasserted.udp_problems(None) == []
    assert unasserted.describe_udp() == "-"


def test_every_kind_of_nat_has_its_udp_profile() -> None:
    """The RFC 4787 profiles the lab's topologies must show (the issue's list)."""
    want = {"full_cone": (EI, EI), "address_restricted": (EI, AD), "masquerade": (EI, APD),
            "symmetric": (APD, APD), "port_forward": (EI, APD), "public": ("none", EI)}
    for key, (mapping, filtering) in want.items():
        expect = SCENARIOS_BY_KEY[key].expect
        assert (expect.udp_mapping, expect.udp_filtering) == (mapping, filtering), key
    port_forward = SCENARIOS_BY_KEY["port_forward"].expect
    assert (port_forward.nat_status, port_forward.nat_filtering) == ("public", EI)
