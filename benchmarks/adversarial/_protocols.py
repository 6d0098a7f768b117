"""Attacks through the protocols: attacks 3, 4, 5 and 9 of the table.

Theory of operation
-------------------
Each attacker is an authenticated connection with a fresh key from a chosen
loopback source IP (:func:`~benchmarks.adversarial._lab.open_bare`); what it
then does is the attack:

3. **dial-request flood** - ``workers`` connections from one host send dial
   requests back to back (for a closed port on their own IP, so a request the
   node admits costs it a real, failing dial-back), reconnecting with a fresh
   key whenever the node closes them; bounded by ``requests`` and ``seconds``.
   *held* counts requests the node admitted (answered other than
   ``E_REQUEST_REJECTED``); *time to close* is from a connection's first
   rejected request to the node closing it.
4. **/status poisoning** - peers announce, in their Identify answers, the
   address of a third party (the helper node C, a real listener) as their
   own. *held* counts attacker peer ids that appear in the target's /status
   over 10 fetches (the round-robin window moves between fetches).
5. **file-descriptor pressure** - the target runs with RLIMIT_NOFILE 256 and
   hundreds of hosts open TCP connections to it (one each, never upgraded), so
   it is at its socket budget; meanwhile a client that connected before asks
   for dial-backs. The defence: inbound sockets stop at the budget (a tenth of
   the limit stays free) and a dial-back that fails on the node's side is
   answered ``E_INTERNAL_ERROR``, never ``E_DIAL_ERROR`` (which would tell
   the client it is unreachable).
9. **stalled stream** - on one connection the attacker opens a dial-request
   stream whose dial-back goes to a tarpit (a listening socket that never
   accepts, on the attacker's IP: the node's handler waits in the dial-back
   and does not read) and sends ``extra`` more messages on it; then it
   measures an Identify request on a second stream of the same connection.
   Without per-stream flow control the full inbox of the first stream pauses
   the connection's reader and the second stream waits for the dial-back to
   time out.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

import trio

from actors import Connection
from benchmarks._ours import handlers
from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    IDENTIFY_PROTOCOL_ID,
    DialRequest,
    DialResponse,
    Keypair,
    ResponseStatus,
    WsAddress,
    decode_autonat_message,
)

from ._connections import hold_flood
from ._lab import (
    Lab,
    Result,
    fd_count,
    honest_probe,
    host_ips,
    measured,
    median_text,
    open_bare,
    open_prober,
    status_document,
)

REJECTED = ResponseStatus.E_REQUEST_REJECTED


async def dial_request(conn: Connection, addr: WsAddress, nonce: int) -> str:
    """One dial request for ``addr``; the answer as ``STATUS/DIAL_STATUS``."""
    async with await conn.open_stream(DIAL_REQUEST_PROTOCOL_ID) as stream:
        await stream.send(DialRequest(addrs=(addr.to_bytes(),), nonce=nonce).to_wire())
        answer = decode_autonat_message(await stream.receive())
    if not isinstance(answer, DialResponse):
        return type(answer).__name__
    return f"{answer.status.name}/{answer.dial_status.name}"


# --- 3: dial-request flood ----------


async def dial_flood(lab: Lab, requests: int = 5000, seconds: float = 20.0,
                     workers: int = 8, source: str = "127.0.0.4") -> Result:
    """Attack 3; see the module docstring."""
    answers: Counter[str] = Counter()
    closes: list[float] = []
    sent = [0]
    closed_port = WsAddress.parse(f"/ip4/{source}/tcp/9/ws")
    deadline = trio.current_time() + seconds

    def more() -> bool:
        return sent[0] < requests and trio.current_time() < deadline

    async def one_connection() -> None:
        first_rejection = None
        async with open_bare(lab.target.addr, source) as conn:
            while more() and not conn.closed.is_set():
                sent[0] += 1
                try:
                    answer = await dial_request(conn, closed_port, random.getrandbits(63))
                except Exception:
                    answers["no answer (connection closed)"] += 1
                    break
                answers[answer] += 1
                if answer.startswith(REJECTED.name) and first_rejection is None:
                    first_rejection = trio.current_time()
            if first_rejection is not None:
                with trio.move_on_after(5):
                    await conn.closed.wait()
                    closes.append(trio.current_time() - first_rejection)

    async def worker() -> None:
        while more():
            try:
                await one_connection()
            except Exception:
                answers["connection refused"] += 1
                await trio.sleep(0.05)

    async with measured(lab.target.pid) as gauge, trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
        await trio.sleep(1.0)
        verdict = await honest_probe(lab)
    admitted = sum(n for a, n in answers.items() if a.split("/")[0] not in (REJECTED.name,)
                   and not a.startswith(("no answer", "connection")))
    return Result(
        attack=f"3 dial-request flood, one host, {workers} conns, fresh keys",
        tried=f"{sent[0]:,} requests", held=f"{admitted} admitted",
        close=f"{median_text(closes)} after 1st rejection ({len(closes)} conns)",
        honest=verdict, gauge=gauge,
        facts={"sent": sent[0], "admitted": admitted, "closed_conns": len(closes),
               "rejected": answers[f"{REJECTED.name}/UNUSED"]})


# --- 4: /status poisoning ----------


async def status_poison(lab: Lab, one_host: int = 8, hosts: int = 20,
                        fetches: int = 10) -> Result:
    """Attack 4; see the module docstring."""
    victim = lab.helpers[-1]
    victim_addr = WsAddress.parse(f"/ip4/{victim.ip}/tcp/{victim.port}/ws")
    sources = ["127.0.0.5"] * one_host + list(host_ips("127.0.30", hosts))
    attackers: set[str] = set()
    stop = trio.Event()

    async def announce(ip: str) -> None:
        keypair = Keypair.generate()
        attackers.add(str(keypair.peer_id))
        table = handlers(keypair, listen_addrs=(victim_addr,))
        async with open_bare(lab.target.addr, ip, keypair=keypair, table=table) as conn:
            with trio.move_on_after(60):
                while not stop.is_set() and not conn.closed.is_set():
                    await trio.sleep(0.2)

    listed: set[str] = set()
    async with measured(lab.target.pid) as gauge, trio.open_nursery() as nursery:
        for ip in sources:
            nursery.start_soon(announce, ip)
        await trio.sleep(2.0)  # the node identifies every newcomer on connect
        verdict = await honest_probe(lab)
        for _ in range(fetches):
            document = await status_document(lab.target)
            for entry in document.get("peer_addrs", []):  # type: ignore[attr-defined]
                peer = str(entry).rsplit("/p2p/", 1)[-1]
                listed.add(peer)
        stop.set()
    poisoned = listed & attackers
    honest_listed = len(listed - attackers)
    return Result(
        attack=f"4 /status poisoning: {len(sources)} peers announce a third party",
        tried=f"{len(sources)} peers", held=f"{len(poisoned)} listed "
        f"({honest_listed} honest peers listed)", close="-", honest=verdict, gauge=gauge,
        facts={"tried": len(sources), "poisoned": len(poisoned), "honest_listed": honest_listed})


# --- 5: file-descriptor pressure ----------

NOFILE_LIMIT = 256


def low_nofile() -> None:
    """``preexec_fn`` of the target in attack 5: RLIMIT_NOFILE soft limit 256."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE_LIMIT, hard))


async def fd_pressure(lab: Lab, hosts: int = 400, dial_backs: int = 10) -> Result:
    """Attack 5, in a lab started with ``preexec=low_nofile``; see the module docstring."""
    answers: Counter[str] = Counter()
    peak_fds = [0]
    sources = [ip for n in (40, 41) for ip in host_ips(f"127.0.{n}", 200)][:hosts]
    async with open_prober(lab.target.addr, "127.0.42.1") as (conn, own):

        async def dial_backs_during_flood() -> str:
            for index in range(dial_backs):
                peak_fds[0] = max(peak_fds[0], fd_count(lab.target.pid))
                try:
                    answers[await dial_request(conn, own, index + 1)] += 1
                except Exception as exc:
                    answers[type(exc).__name__] += 1
            return "dial-backs: " + ", ".join(f"{n} {a}" for a, n in answers.most_common())

        result = await hold_flood(lab, "raw", sources, 1, during=dial_backs_during_flood,
                                  name=f"5 fd pressure: RLIMIT_NOFILE {NOFILE_LIMIT}, "
                                       f"{hosts} hosts' TCP conns")
    dial_errors = sum(n for a, n in answers.items() if a.endswith("E_DIAL_ERROR"))
    result.held += f"; fds peak {peak_fds[0]}/{NOFILE_LIMIT}"
    result.facts |= {"dial_backs": dial_backs, "dial_errors": dial_errors,
                     "ok": answers["OK/OK"], "peak_fds": peak_fds[0]}
    return result


# --- 9: stalled stream ----------


async def _identify_rtt(conn: Connection, limit: float) -> float | None:
    began = trio.current_time()
    with trio.move_on_after(limit):
        async with await conn.open_stream(IDENTIFY_PROTOCOL_ID) as stream:
            await stream.request({}, timeout=limit)
        return trio.current_time() - began
    return None


async def stalled_stream(lab: Lab, extra: int = 64, source: str = "127.0.0.9",
                         limit: float = 30.0) -> Result:
    """Attack 9; see the module docstring."""
    tarpit = trio.socket.socket()
    with tarpit:
        await tarpit.bind((source, 0))
        tarpit.listen(16)  # never accepted: the dial-back's upgrade waits until it times out
        port = tarpit.getsockname()[1]
        tarpit_addr = WsAddress.parse(f"/ip4/{source}/tcp/{port}/ws")
        async with measured(lab.target.pid) as gauge, open_bare(lab.target.addr, source) as conn:
            before = await _identify_rtt(conn, limit)
            stream = await conn.open_stream(DIAL_REQUEST_PROTOCOL_ID)
            await stream.send(DialRequest(addrs=(tarpit_addr.to_bytes(),), nonce=7).to_wire())
            sent = 0
            for index in itertools.islice(itertools.count(), extra):
                with trio.move_on_after(1.0):
                    await stream.send({"pad": index})
                    sent += 1
            during = await _identify_rtt(conn, limit)
            verdict = await honest_probe(lab)
    during_text = f"{during:.2f} s" if during is not None else f"none in {limit:g} s"
    return Result(
        attack=f"9 stalled stream: {extra} unread messages, 2nd stream on the same conn",
        tried=f"{sent} msgs", held=f"2nd stream answered in {during_text} "
        f"(before: {before or 0:.3f} s)", close="-", honest=verdict, gauge=gauge,
        facts={"sent": sent, "before": before or -1.0,
               "during": during if during is not None else -1.0})
