"""Sans-io stream multiplexer: ids, half-close, limits, timeouts and every violation."""

from __future__ import annotations

import contextlib
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocols import (
    DecodeError,
    ErrorFrame,
    FrameTooLarge,
    HandshakeOrderError,
    LocalProtocolError,
    ProtocolError,
    StreamError,
    StreamLimitReached,
    WireMap,
    decode_stream_frame,
)
from protocols.wire._events import SendFrame
from protocols.wire._frames import StreamFrame, WindowUpdate
from protocols.wire._mux import (
    InboundStreamOpened,
    InboundStreamRejected,
    MuxEvent,
    MuxLimits,
    SendCreditGranted,
    StreamErrored,
    StreamMessage,
    StreamMux,
    StreamState,
)


def frame(sid: int, message: WireMap | None = None, *, p: str | None = None,
          fin: bool = False) -> bytes:
    return StreamFrame(sid, p, {"x": 1} if message is None else message, fin).encode()


def err(sid: int, code: str = "bad-message") -> bytes:
    return ErrorFrame(sid, code).encode()


def pair(**limits: int | float) -> tuple[StreamMux, StreamMux]:
    mux_limits = MuxLimits(**limits)  # type: ignore[arg-type]
    return (StreamMux(initiator=True, limits=mux_limits),
            StreamMux(initiator=False, limits=mux_limits))


def replies(events: list[MuxEvent]) -> list[bytes]:
    """The frames ``events`` asks us to send."""
    return [event.data for event in events if isinstance(event, SendFrame)]


# --- ids and the happy path ----------------------------------------------------


def test_dialer_opens_odd_ids_and_listener_even_ids() -> None:
    dialer, listener = pair()
    assert [dialer.open_stream("/a", 0.0) for _ in range(3)] == [1, 3, 5]
    assert [listener.open_stream("/a", 0.0) for _ in range(2)] == [2, 4]


def test_only_the_first_frame_carries_the_protocol_id() -> None:
    dialer, _ = pair()
    sid = dialer.open_stream("/ipfs/id/1.0.0", 0.0)
    first = decode_stream_frame(dialer.encode_message(sid, {"a": 1}))
    second = decode_stream_frame(dialer.encode_message(sid, {"a": 2}, fin=True))
    assert isinstance(first, StreamFrame) and isinstance(second, StreamFrame)
    assert first.protocol == "/ipfs/id/1.0.0" and second.protocol is None
    assert (first.stream_id, first.message, first.fin) == (1, {"a": 1}, False)
    assert second.fin is True


def test_request_response_closes_the_stream_on_both_sides() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/echo", 0.0)
    out = listener.handle_frame(dialer.encode_message(sid, {"q": 1}, fin=True), 0.1)
    assert out == [InboundStreamOpened(sid, "/echo"), StreamMessage(sid, {"q": 1}, True)]
    assert dialer.stream_state(sid) is StreamState.LOCAL_CLOSED
    assert listener.stream_state(sid) is StreamState.REMOTE_CLOSED
    back = dialer.handle_frame(listener.encode_message(sid, {"r": 2}, fin=True), 0.2)
    assert back == [StreamMessage(sid, {"r": 2}, True)]
    assert dialer.stream_state(sid) is StreamState.CLOSED
    assert listener.stream_state(sid) is StreamState.CLOSED
    assert dialer.poll_timeout() is None and listener.poll_timeout() is None


def test_half_close_lets_the_other_side_keep_sending() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/data", 0.0)
    listener.handle_frame(dialer.encode_fin(sid), 0.0)  # opens and half-closes at once
    for n in range(3):
        out = dialer.handle_frame(listener.encode_message(sid, {"n": n}), 0.0)
        assert out == [StreamMessage(sid, {"n": n}, False)]
    with pytest.raises(LocalProtocolError, match="already sent fin"):
        dialer.encode_message(sid, {"late": True})
    assert dialer.handle_frame(listener.encode_fin(sid), 0.0) == [StreamMessage(sid, None, True)]
    assert dialer.stream_state(sid) is StreamState.CLOSED


def test_bare_fin_is_reported_without_a_message_and_empty_final_message_is_refused() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/a", 0.0)
    with pytest.raises(LocalProtocolError, match="bare fin"):
        dialer.encode_message(sid, {}, fin=True)
    out = listener.handle_frame(dialer.encode_message(sid, {}), 0.0)
    assert out[1] == StreamMessage(sid, {}, False)  # an empty message is still a message
    assert listener.handle_frame(dialer.encode_fin(sid), 0.0) == [StreamMessage(sid, None, True)]


def test_unannounced_local_stream_costs_nothing_until_its_first_frame() -> None:
    dialer, listener = pair()
    first = dialer.open_stream("/a", 0.0)
    second = dialer.open_stream("/b", 0.0)
    out = listener.handle_frame(dialer.encode_message(second, {}), 0.0)
    assert out[0] == InboundStreamOpened(second, "/b")
    assert listener.stream_state(first) is None
    out = listener.handle_frame(dialer.encode_message(first, {}), 0.0)  # announced out of order
    assert out[0] == InboundStreamOpened(first, "/a")


# --- connection-level violations -------------------------------------------------


VIOLATIONS: list[tuple[str, list[bytes], type[ProtocolError], str]] = [
    ("undecodable", [b"\xc1garbage"], DecodeError, "msgpack"),
    ("empty", [b""], DecodeError, "empty frame"),
    ("oversized", [frame(1, {"b": b"x" * 2000}, p="/a")], FrameTooLarge, "exceeds the limit"),
    ("handshake frame", [b"\x81\xa1t\xa5hello"], HandshakeOrderError, "after the handshake"),
    ("wrong parity", [frame(2, p="/a")], StreamError, "must use odd ids"),
    ("missing protocol id", [frame(1)], StreamError, "no protocol id"),
    ("protocol id twice", [frame(1, p="/a"), frame(1, p="/a")], StreamError, "already open"),
    ("frame after fin", [frame(1, p="/a", fin=True), frame(1)], StreamError,
     "after the peer's fin"),
    ("frame after reset", [frame(1, p="/a"), err(1), frame(1)], StreamError, "reset by the peer"),
    ("reserved id", [frame(0, p="/a")], StreamError, "reserved"),
    ("reused id", [frame(1, p="/a"), err(1), frame(1, p="/a")], StreamError, "reused"),
]


@pytest.mark.parametrize(("frames", "error", "text"),
                         [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_violations_raise_and_fail_the_mux(frames: list[bytes], error: type[ProtocolError],
                                           text: str) -> None:
    listener = StreamMux(initiator=False, limits=MuxLimits(max_frame_bytes=1024))
    *legal, bad = frames
    for data in legal:
        listener.handle_frame(data, 0.0)
    with pytest.raises(error, match=text):
        listener.handle_frame(bad, 0.0)
    assert listener.failure is not None and text.split()[0] in listener.failure
    with pytest.raises(StreamError, match="already failed"):
        listener.handle_frame(frame(101, p="/a"), 0.0)
    with pytest.raises(LocalProtocolError, match="failed"):
        listener.open_stream("/a", 0.0)


def test_frame_after_both_fins_is_a_violation() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/a", 0.0)
    listener.handle_frame(dialer.encode_fin(sid), 0.0)
    dialer.handle_frame(listener.encode_fin(sid), 0.0)
    with pytest.raises(StreamError, match="closed by both sides"):
        listener.handle_frame(frame(sid), 0.0)


def test_peer_sending_on_our_stream_before_we_announced_it_is_a_violation() -> None:
    dialer, _ = pair()
    sid = dialer.open_stream("/a", 0.0)
    with pytest.raises(StreamError, match="only we may open"):
        dialer.handle_frame(frame(sid), 0.0)


def test_peer_using_an_id_of_our_parity_that_we_never_opened() -> None:
    dialer, _ = pair()
    with pytest.raises(StreamError, match="must use even ids"):
        dialer.handle_frame(frame(7, p="/a"), 0.0)


# --- stream-level trouble: answered, connection survives ---------------------------


def _open_inbound(listener: StreamMux, sid: int, protocol: str = "/a") -> list[MuxEvent]:
    return listener.handle_frame(frame(sid, p=protocol), 0.0)


def test_too_many_streams_is_answered_with_an_error_frame() -> None:
    listener = StreamMux(initiator=False, limits=MuxLimits(max_streams=2))
    _open_inbound(listener, 1)
    _open_inbound(listener, 3)
    out = _open_inbound(listener, 5)
    assert out == [InboundStreamRejected(5, "/a", "too-many-streams"),
                   SendFrame(ErrorFrame(5, "too-many-streams").encode())]
    assert listener.handle_frame(frame(5, fin=True), 0.0) == []  # in flight: dropped
    listener.handle_frame(err(1), 0.0)  # one finishes: room again
    assert _open_inbound(listener, 7)[0] == InboundStreamOpened(7, "/a")
    stats = listener.statistics()
    assert (stats.rejected_too_many, stats.open_inbound, stats.frames_dropped) == (1, 2, 1)


def test_reopening_a_rejected_id_is_a_violation() -> None:
    listener = StreamMux(initiator=False, limits=MuxLimits(max_streams=1))
    _open_inbound(listener, 1)
    assert replies(_open_inbound(listener, 3))
    with pytest.raises(StreamError, match="reused"):
        _open_inbound(listener, 3)


def test_unsupported_protocol_is_answered_with_an_error_frame() -> None:
    listener = StreamMux(initiator=False, protocols={"/a"})
    out = _open_inbound(listener, 1, "/nope")
    assert out[0] == InboundStreamRejected(1, "/nope", "unsupported-protocol")
    assert [decode_stream_frame(r) for r in replies(out)] == [
        ErrorFrame(1, "unsupported-protocol")]
    assert _open_inbound(listener, 3, "/a")[0] == InboundStreamOpened(3, "/a")
    assert listener.statistics().rejected_unsupported == 1


def test_open_stream_at_the_limit_raises_locally() -> None:
    dialer = StreamMux(initiator=True, limits=MuxLimits(max_streams=2))
    first = dialer.open_stream("/a", 0.0)
    dialer.open_stream("/a", 0.0)
    with pytest.raises(StreamLimitReached, match="limit 2"):
        dialer.open_stream("/a", 0.0)
    dialer.encode_error(first, "internal-error")
    assert dialer.open_stream("/a", 0.0) == 5


def test_inbound_and_outbound_limits_are_separate() -> None:
    listener = StreamMux(initiator=False, limits=MuxLimits(max_streams=1))
    listener.open_stream("/a", 0.0)
    assert _open_inbound(listener, 1)[0] == InboundStreamOpened(1, "/a")


def test_invalid_local_arguments_are_local_protocol_errors() -> None:
    dialer, _ = pair()
    for bad in ("", "a\nb", "x" * 300):
        with pytest.raises(LocalProtocolError, match="protocol id"):
            dialer.open_stream(bad, 0.0)
    sid = dialer.open_stream("/a", 0.0)
    with pytest.raises(LocalProtocolError, match="error code"):
        dialer.encode_error(sid, "")
    with pytest.raises(LocalProtocolError, match="not live"):
        dialer.encode_message(99, {})


def test_too_large_message_leaves_the_stream_unchanged() -> None:
    dialer = StreamMux(initiator=True, limits=MuxLimits(max_frame_bytes=512))
    sid = dialer.open_stream("/a", 0.0)
    with pytest.raises(FrameTooLarge):
        dialer.encode_message(sid, {"b": b"x" * 600}, fin=True)
    decoded = decode_stream_frame(dialer.encode_message(sid, {"b": b"ok"}))
    assert isinstance(decoded, StreamFrame) and decoded.protocol == "/a"
    assert dialer.stream_state(sid) is StreamState.OPEN


# --- resets, races, timeouts ----------------------------------------------------------


def test_reset_in_either_direction() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/a", 0.0)
    listener.handle_frame(dialer.encode_message(sid, {}), 0.0)
    out = dialer.handle_frame(listener.encode_error(sid, "bad-message"), 0.0)
    assert out == [StreamErrored(sid, "bad-message", by_peer=True)]
    assert dialer.stream_state(sid) is StreamState.RESET
    assert listener.stream_state(sid) is StreamState.RESET
    with pytest.raises(LocalProtocolError, match="not live"):
        dialer.encode_message(sid, {})


def test_frames_in_flight_after_our_reset_are_dropped() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/a", 0.0)
    listener.handle_frame(dialer.encode_message(sid, {}), 0.0)
    in_flight = [listener.encode_message(sid, {"n": 1}), listener.encode_fin(sid)]
    reset = dialer.encode_error(sid, "internal-error")
    for data in in_flight:
        assert dialer.handle_frame(data, 0.0) == []
    crossing = listener.encode_error(sid, "bad-message")  # it resets too before seeing ours
    assert listener.handle_frame(reset, 0.0) == []
    assert dialer.handle_frame(crossing, 0.0) == []
    assert dialer.statistics().frames_dropped == 3


def test_error_frame_for_an_unknown_stream_is_ignored() -> None:
    listener = StreamMux(initiator=False)
    assert listener.handle_frame(err(41), 0.0) == []
    assert listener.failure is None


def test_streams_time_out_and_both_sides_see_the_reset() -> None:
    dialer, listener = pair(stream_timeout=5.0)
    sid = dialer.open_stream("/a", 1.0)
    listener.handle_frame(dialer.encode_message(sid, {}), 2.0)
    assert dialer.poll_timeout() == 6.0 and listener.poll_timeout() == 7.0
    assert dialer.handle_timeout(5.9) == []
    out = dialer.handle_timeout(6.0)
    assert out == [StreamErrored(sid, "stream-timeout", by_peer=False),
                   SendFrame(ErrorFrame(sid, "stream-timeout").encode())]
    assert listener.handle_frame(replies(out)[0], 6.1) == [
        StreamErrored(sid, "stream-timeout", by_peer=True)]
    assert listener.handle_timeout(100.0) == []
    assert dialer.statistics().timed_out == 1 and listener.statistics().reset_by_peer == 1


def test_poll_timeout_is_the_earliest_stream_deadline() -> None:
    dialer, listener = pair(stream_timeout=5.0)
    assert dialer.poll_timeout() is None  # no live stream: nothing to wait for
    first = dialer.open_stream("/a", 1.0)
    second = dialer.open_stream("/a", 0.5)  # allocated later, but due earlier
    assert dialer.poll_timeout() == 5.5
    listener.handle_frame(dialer.encode_message(first, {}), 3.0)
    listener.handle_frame(dialer.encode_message(second, {}), 2.0)
    assert listener.poll_timeout() == 7.0
    assert dialer.handle_timeout(5.4) == []
    [timed_out, _] = dialer.handle_timeout(5.5)
    assert timed_out == StreamErrored(second, "stream-timeout", by_peer=False)
    assert dialer.poll_timeout() == 6.0
    dialer.encode_error(first, "internal-error")
    assert dialer.poll_timeout() is None


def test_forgotten_streams_are_dropped_not_violations() -> None:
    listener = StreamMux(initiator=False, limits=MuxLimits(remembered_streams=1))
    _open_inbound(listener, 1)
    listener.encode_error(1, "bad-message")
    _open_inbound(listener, 3)
    listener.encode_error(3, "bad-message")  # evicts stream 1 from memory
    assert listener.stream_state(1) is None
    assert listener.handle_frame(frame(1), 0.0) == []
    listener.open_stream("/a", 0.0)
    sid = listener.open_stream("/a", 0.0)
    listener.encode_error(sid - 2, "bad-message")
    listener.encode_error(sid, "bad-message")
    assert listener.handle_frame(frame(sid - 2), 0.0) == []


def test_statistics_count_traffic() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/a", 0.0)
    listener.handle_frame(dialer.encode_message(sid, {}, fin=False), 0.0)
    stats = dialer.statistics()
    assert (stats.open_outbound, stats.opened_outbound, stats.frames_sent) == (1, 1, 1)
    stats = listener.statistics()
    assert (stats.open_inbound, stats.opened_inbound, stats.frames_received) == (1, 1, 1)


def test_limits_are_validated() -> None:
    for bad in ({"max_streams": 0}, {"stream_timeout": 0}, {"max_frame_bytes": 2**30},
                {"remembered_streams": True}, {"stream_timeout": "1"}, {"stream_window": 0},
                {"stream_window": 2**32}):
        with pytest.raises(ValueError):
            MuxLimits(**bad)


# --- flow control ---------------------------------------------------------------------


def update(sid: int, credit: int) -> bytes:
    return WindowUpdate(sid, credit).encode()


def test_sending_spends_credit_and_stops_at_zero() -> None:
    dialer, _ = pair(stream_window=4)
    sid = dialer.open_stream("/a", 0.0)
    for left in (3, 2, 1, 0):
        dialer.encode_message(sid, {"n": left})
        assert dialer.send_credit(sid) == left
    with pytest.raises(LocalProtocolError, match="no send credit"):
        dialer.encode_message(sid, {"n": -1})
    with pytest.raises(LocalProtocolError, match="no send credit"):
        dialer.encode_message(sid, {"n": -1}, fin=True)
    assert dialer.statistics().frames_sent == 4  # the refusals changed nothing
    decode_stream_frame(dialer.encode_fin(sid))  # a bare fin is free
    with pytest.raises(LocalProtocolError, match="already sent fin"):
        dialer.send_credit(sid)


def test_error_frames_are_free_both_ways() -> None:
    dialer, listener = pair(stream_window=1)
    sid = dialer.open_stream("/a", 0.0)
    listener.handle_frame(dialer.encode_message(sid, {}), 0.0)
    assert listener.handle_frame(dialer.encode_error(sid, "bad-message"), 0.0) == [
        StreamErrored(sid, "bad-message", by_peer=True)]
    other = dialer.open_stream("/a", 0.0)
    listener.handle_frame(dialer.encode_message(other, {}), 0.0)
    back = dialer.handle_frame(listener.encode_error(other, "internal-error"), 0.0)
    assert back == [StreamErrored(other, "internal-error", by_peer=True)]


def test_consumed_messages_are_granted_back_in_batches() -> None:
    dialer, listener = pair(stream_window=4)
    sid = dialer.open_stream("/a", 0.0)
    for n in range(4):
        listener.handle_frame(dialer.encode_message(sid, {"n": n}), 0.0)
    assert listener.handle_consumed(sid) == []  # 1 of 4: below half the window
    grant = replies(listener.handle_consumed(sid))  # 2 of 4: half the window
    assert [decode_stream_frame(data) for data in grant] == [WindowUpdate(sid, 2)]
    assert dialer.handle_frame(grant[0], 0.0) == [SendCreditGranted(sid, 2)]
    assert dialer.send_credit(sid) == 2
    assert listener.handle_consumed(sid, 2) == [SendFrame(update(sid, 2))]
    assert dialer.handle_frame(update(sid, 2), 0.0) == [SendCreditGranted(sid, 4)]
    assert (listener.statistics().window_updates_sent,
            dialer.statistics().window_updates_received) == (2, 2)


def test_a_window_of_one_grants_every_message() -> None:
    dialer, listener = pair(stream_window=1)
    sid = dialer.open_stream("/a", 0.0)
    for n in range(3):
        listener.handle_frame(dialer.encode_message(sid, {"n": n}), 0.0)
        dialer.handle_frame(replies(listener.handle_consumed(sid))[0], 0.0)
    assert dialer.send_credit(sid) == 1


def test_message_beyond_the_window_resets_only_that_stream() -> None:
    listener = StreamMux(initiator=False, limits=MuxLimits(stream_window=2))
    listener.handle_frame(frame(1, p="/a"), 0.0)
    listener.handle_frame(frame(1), 0.0)
    out = listener.handle_frame(frame(1, fin=True), 0.0)  # the third message: no credit left
    assert out[0] == StreamErrored(1, "flow-control", by_peer=False)
    assert [decode_stream_frame(data) for data in replies(out)] == [ErrorFrame(1, "flow-control")]
    assert listener.stream_state(1) is StreamState.RESET
    assert listener.handle_frame(frame(1), 0.0) == []  # in flight behind it: dropped
    assert listener.handle_frame(frame(3, p="/a"), 0.0)[0] == InboundStreamOpened(3, "/a")
    stats = listener.statistics()
    assert (stats.flow_control_resets, stats.reset_by_us, stats.frames_dropped) == (1, 1, 1)
    assert listener.failure is None


def test_a_bare_fin_needs_no_credit() -> None:
    listener = StreamMux(initiator=False, limits=MuxLimits(stream_window=1))
    listener.handle_frame(frame(1, p="/a"), 0.0)
    assert listener.handle_frame(frame(1, {}, fin=True), 0.0) == [StreamMessage(1, None, True)]


def test_no_credit_is_granted_once_the_peer_sent_fin() -> None:
    dialer, listener = pair(stream_window=2)
    sid = dialer.open_stream("/a", 0.0)
    listener.handle_frame(dialer.encode_message(sid, {"n": 1}), 0.0)
    listener.handle_frame(dialer.encode_message(sid, {"n": 2}, fin=True), 0.0)
    assert listener.handle_consumed(sid, 2) == []  # the peer can send nothing more
    listener.encode_fin(sid)  # now closed and forgotten on this side
    assert listener.handle_consumed(sid) == []


def test_consuming_what_did_not_arrive_is_a_local_error() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/a", 0.0)
    with pytest.raises(LocalProtocolError, match="never received"):
        dialer.handle_consumed(sid)  # not even announced
    listener.handle_frame(dialer.encode_message(sid, {}), 0.0)
    with pytest.raises(LocalProtocolError, match="only 1 arrived"):
        listener.handle_consumed(sid, 2)
    for bad in (0, -1, True):
        with pytest.raises(LocalProtocolError, match="positive integer"):
            listener.handle_consumed(sid, bad)
    with pytest.raises(LocalProtocolError, match="never received"):
        listener.handle_consumed(99)
    listener.handle_consumed(sid)  # the refusals changed nothing


def test_late_window_updates_are_dropped() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/a", 0.0)
    listener.handle_frame(dialer.encode_message(sid, {}), 0.0)
    assert dialer.handle_frame(listener.encode_message(sid, {"r": 1}, fin=True), 0.0)
    dialer.encode_message(sid, {"last": 1}, fin=True)  # both fins: the stream is closed
    assert dialer.handle_frame(update(sid, 8), 0.0) == []  # the peer read on after its fin
    reset = dialer.open_stream("/a", 0.0)
    dialer.encode_message(reset, {})
    dialer.encode_error(reset, "internal-error")
    assert dialer.handle_frame(update(reset, 8), 0.0) == []
    half = dialer.open_stream("/a", 0.0)
    dialer.encode_fin(half)
    assert dialer.handle_frame(update(half, 8), 0.0) == []  # after our fin: too late to matter
    assert dialer.statistics().frames_dropped == 2
    assert dialer.failure is None


@pytest.mark.parametrize("sid", [0, 1, 3, 2])
def test_window_update_for_a_stream_the_peer_cannot_know_is_a_violation(sid: int) -> None:
    dialer = StreamMux(initiator=True)
    dialer.open_stream("/a", 0.0)  # 1: allocated but never announced; 3: never allocated
    with pytest.raises(StreamError, match="window update for a stream the peer cannot know"):
        dialer.handle_frame(update(sid, 1), 0.0)
    assert dialer.failure is not None


def test_window_update_overflowing_the_credit_is_a_violation() -> None:
    dialer, listener = pair()
    sid = dialer.open_stream("/a", 0.0)
    listener.handle_frame(dialer.encode_message(sid, {}), 0.0)
    with pytest.raises(StreamError, match="overflows the send credit"):
        dialer.handle_frame(update(sid, 2**32 - 1), 0.0)


# --- hypothesis: hostile input only ever raises ProtocolError ---------------------------


@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_arbitrary_bytes_raise_only_protocol_errors(blobs: list[bytes], initiator: bool) -> None:
    mux = StreamMux(initiator=initiator)
    for blob in blobs:
        with contextlib.suppress(ProtocolError):
            mux.handle_frame(blob, 0.0)


_messages = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3) | st.binary(max_size=4),
                            max_size=2)
_stream_frames = st.builds(
    lambda sid, p, m, fin: StreamFrame(sid, p, m, fin).encode(),
    st.integers(0, 12), st.none() | st.sampled_from(["/a", "/b"]), _messages, st.booleans())
_error_frames = st.builds(lambda sid: err(sid, "bad-message"), st.integers(0, 12))
_window_updates = st.builds(update, st.integers(0, 12), st.integers(1, 3))
_local_ops = st.tuples(st.sampled_from(["open", "send", "fin", "reset", "expire"]),
                       st.integers(0, 5), st.floats(0, 3))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_stream_frames | _error_frames | _window_updates | _local_ops, max_size=30),
       st.booleans())
def test_random_frames_and_local_operations(steps: list[bytes | tuple[str, int, float]],
                                            initiator: bool) -> None:
    mux = StreamMux(initiator=initiator, protocols={"/a"},
                    limits=MuxLimits(max_streams=2, stream_timeout=2.0, stream_window=2))
    now = 0.0
    for step in steps:
        if isinstance(step, bytes):
            try:
                _check_events(mux, mux.handle_frame(step, now))
            except ProtocolError:
                assert mux.failure is not None
                return
        else:
            now += step[2]
            _local_op(mux, step[0], step[1], now)
        stats = mux.statistics()
        assert stats.open_inbound <= 2 and stats.open_outbound <= 2


def _check_events(mux: StreamMux, events: list[MuxEvent]) -> None:
    for reply in replies(events):
        assert isinstance(decode_stream_frame(reply), ErrorFrame)
    for event in events:
        if isinstance(event, SendCreditGranted):
            assert mux.send_credit(event.stream_id) == event.credit
    for event in events:
        if isinstance(event, InboundStreamOpened):
            assert event.stream_id % 2 == (0 if mux.initiator else 1)


def _local_op(mux: StreamMux, op: str, pick: int, now: float) -> None:
    live = [sid for sid in range(1, 40) if mux.stream_state(sid) in
            (StreamState.OPEN, StreamState.LOCAL_CLOSED, StreamState.REMOTE_CLOSED)]
    sendable = [sid for sid in live if mux.stream_state(sid) in
                (StreamState.OPEN, StreamState.REMOTE_CLOSED)]
    if op == "open":
        try:
            mux.open_stream("/a", now)
        except StreamLimitReached:
            assert mux.statistics().open_outbound == 2
    elif op in ("send", "fin") and sendable:
        sid = sendable[pick % len(sendable)]
        if op == "send" and mux.send_credit(sid) == 0:
            with pytest.raises(LocalProtocolError, match="no send credit"):
                mux.encode_message(sid, {"n": pick})
            return
        data = mux.encode_message(sid, {"n": pick}) if op == "send" else mux.encode_fin(sid)
        assert decode_stream_frame(data).stream_id == sid
    elif op == "reset" and live:
        mux.encode_error(live[pick % len(live)], "internal-error")
    elif op == "expire":
        deadline = mux.poll_timeout()
        events = mux.handle_timeout(now)
        assert (deadline is not None and deadline <= now) == bool(events)
        assert len(replies(events)) * 2 == len(events)  # each timeout: StreamErrored, SendFrame
        later = mux.poll_timeout()
        assert later is None or later > now


# --- hypothesis: two honest peers never see a violation ------------------------------------


class TwoPeers(RuleBasedStateMachine):
    """A dialer and a listener exchange frames over two FIFO links with random timing.

    Legal traffic - including crossing resets, timeouts, refused streams and
    window updates crossing fins - must never raise, each side receives a
    prefix of what the other sent, in order, and a sender that waits for
    credit while its peer consumes never overruns the window.
    """

    def __init__(self) -> None:
        super().__init__()
        limits = MuxLimits(max_streams=2, stream_timeout=3.0, remembered_streams=4,
                           stream_window=2)
        self.muxes = {side: StreamMux(initiator=(side == "d"), limits=limits,
                                      protocols={"/a", "/b"}) for side in "dl"}
        self.links: dict[str, list[bytes]] = {"d": [], "l": []}  # frames in flight *to* side
        self.sent: dict[tuple[str, int], list[WireMap]] = defaultdict(list)
        self.got: dict[tuple[str, int], list[WireMap]] = defaultdict(list)
        self.unread: dict[tuple[str, int], int] = defaultdict(int)  # (reader, stream)
        self.now = 0.0
        self.counter = 0

    @staticmethod
    def other(side: str) -> str:
        return "l" if side == "d" else "d"

    def _sendable(self, side: str) -> list[int]:
        mux = self.muxes[side]
        return [sid for sid in range(1, 200)
                if mux.stream_state(sid) in (StreamState.OPEN, StreamState.REMOTE_CLOSED)]

    @rule(side=st.sampled_from("dl"), protocol=st.sampled_from(["/a", "/b", "/unknown"]))
    def open(self, side: str, protocol: str) -> None:
        with contextlib.suppress(StreamLimitReached):
            self.muxes[side].open_stream(protocol, self.now)

    @rule(side=st.sampled_from("dl"), pick=st.integers(0, 10), fin=st.booleans())
    def send(self, side: str, pick: int, fin: bool) -> None:
        sendable = self._sendable(side)
        if not sendable:
            return
        sid = sendable[pick % len(sendable)]
        if self.muxes[side].send_credit(sid) == 0:
            return  # an honest sender waits for credit
        self.counter += 1
        message: WireMap = {"n": self.counter}
        self.sent[(side, sid)].append(message)
        self.links[self.other(side)].append(self.muxes[side].encode_message(sid, message, fin=fin))

    @rule(side=st.sampled_from("dl"), pick=st.integers(0, 10))
    def reset(self, side: str, pick: int) -> None:
        live = [sid for sid in range(1, 200) if self.muxes[side].stream_state(sid) in
                (StreamState.OPEN, StreamState.LOCAL_CLOSED, StreamState.REMOTE_CLOSED)]
        if live:
            data = self.muxes[side].encode_error(live[pick % len(live)], "internal-error")
            self.links[self.other(side)].append(data)

    @precondition(lambda self: self.links["d"] or self.links["l"])
    @rule(side=st.sampled_from("dl"))
    def deliver(self, side: str) -> None:
        if not self.links[side]:
            return
        events = self.muxes[side].handle_frame(self.links[side].pop(0), self.now)
        self.links[self.other(side)].extend(replies(events))
        self._record(side, events)

    @rule(side=st.sampled_from("dl"), pick=st.integers(0, 10))
    def consume(self, side: str, pick: int) -> None:
        unread = sorted(key for key, count in self.unread.items() if key[0] == side and count)
        if not unread:
            return
        key = unread[pick % len(unread)]
        self.unread[key] -= 1
        self.links[self.other(side)].extend(replies(self.muxes[side].handle_consumed(key[1])))

    @rule(dt=st.floats(0.1, 2.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        for side, mux in self.muxes.items():
            self.links[self.other(side)].extend(replies(mux.handle_timeout(self.now)))

    def _record(self, side: str, events: list[MuxEvent]) -> None:
        for event in events:
            if isinstance(event, StreamMessage) and event.message is not None:
                self.got[(self.other(side), event.stream_id)].append(event.message)
                self.unread[(side, event.stream_id)] += 1
            assert not (isinstance(event, StreamErrored) and event.code == "flow-control")

    @invariant()
    def received_is_a_prefix_of_sent(self) -> None:
        for key, got in self.got.items():
            assert got == self.sent[key][:len(got)]

    @invariant()
    def never_failed(self) -> None:
        assert all(mux.failure is None for mux in self.muxes.values())


TwoPeers.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_two_honest_peers = TwoPeers.TestCase


# --- decoding skips the second walk of a message, not its checks ---------------------------


@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                    | st.text(max_size=8) | st.binary(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12),
       st.booleans())
def test_a_decoded_stream_frame_equals_the_frame_built_from_its_message(
        value: object, fin: bool) -> None:
    frame = StreamFrame(5, "/test/1", {"v": value}, fin)  # type: ignore[dict-item]
    decoded = decode_stream_frame(frame.encode())
    assert decoded == frame
    assert isinstance(decoded, StreamFrame) and decoded.message == {"v": value}
