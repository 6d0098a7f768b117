"""One probe's outcome: what the server answered and whether our dial-back arrived.

Theory of operation
-------------------
A probe ends with the server's ``DialResponse`` (or none: a timeout or a
broken stream) and one fact of our own: whether a ``DialBack`` carrying our
nonce arrived on an inbound connection. Only that arrival is positive
evidence; a server that says it dialed back when nothing arrived lied; a
server that says its dial failed (``E_DIAL_ERROR``) gave negative evidence;
refusals, timeouts and anything else are no evidence. The table is
:class:`~protocols.ProbeOutcome`'s; :class:`~._reachability.Reachability`
weighs the outcomes.
"""

from __future__ import annotations

from typing import Final

from ._autonat_events import ProbeOutcome
from ._autonat_msg import DialResponse, DialStatus, ResponseStatus

__all__ = ["claims_dial_back", "probe_outcome"]

_REFUSALS: Final = (ResponseStatus.E_DIAL_REFUSED, ResponseStatus.E_REQUEST_REJECTED)


def claims_dial_back(response: DialResponse | None) -> bool:
    """The server says it dialed back (``OK`` / ``dial_status OK``).

    Without our nonce arriving that claim is a lie (:func:`probe_outcome`);
    the probing actor uses it to give a claimed dial-back a moment to be seen.
    """
    return (response is not None and response.status == ResponseStatus.OK
            and response.dial_status == DialStatus.OK)


def probe_outcome(
    response: DialResponse | None, *, dial_back_verified: bool, timed_out: bool = False
) -> ProbeOutcome:
    """Classify one probe (see :class:`~protocols.ProbeOutcome` for the table).

    ``dial_back_verified``: a ``DialBack`` with our nonce arrived on an inbound
    connection. ``response`` is the server's ``DialResponse`` (``None`` when
    none arrived; then ``timed_out`` tells a timeout from a broken stream).
    """
    if dial_back_verified:
        return ProbeOutcome.REACHABLE
    if response is None:
        return ProbeOutcome.TIMEOUT if timed_out else ProbeOutcome.ERROR
    if response.status in _REFUSALS:
        return ProbeOutcome.REFUSED
    if response.status != ResponseStatus.OK:
        return ProbeOutcome.ERROR
    if claims_dial_back(response):
        return ProbeOutcome.LIED
    if response.dial_status == DialStatus.E_DIAL_ERROR:
        return ProbeOutcome.UNREACHABLE
    return ProbeOutcome.ERROR
