"""The CLI's node-running commands: ``node``, ``boot``, ``probe``, ``connect``, ``status``,
``demo``.

Each ``cmd_*`` takes the parsed arguments and returns the exit status; user
errors are raised as :class:`CliError` (one line, exit 1). ``node`` and
``boot`` run until SIGINT or SIGTERM and then shut down cleanly (actors stop
in reverse order, the peer store is saved, the HTTP server drains).
``probe`` runs a temporary node until it has a verdict or times out;
``connect`` runs one until it reached a peer (:mod:`actors.surfaces._cli_connect`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from protocols import (
    AddressPolicy,
    ConfigError,
    KeyFileError,
    Keypair,
    NodeConfig,
    NodeSnapshot,
    ProtocolError,
    WsAddress,
    parse_host_port,
)

from ..node import load_or_create_keypair, open_node
from ..runtime import ServiceNotifier, configure_logging, get_logger
from ..transport import check_tls_files
from ._cli_connect import TargetError, connect_to, parse_target, print_connect
from ._cli_probe import (
    ProgressPrinter,
    no_verdict_reason,
    probe_facts,
    progress_stream,
    wait_for_hairpin,
    wait_for_mapping,
    wait_for_udp,
    wait_for_verdict,
)
from ._cli_settings import (
    LoadedConfig,
    bind_hint,
    bind_problems,
    free_default_ports,
    host_port,
    load_node_config,
)
from ._explain import ProfileFacts, explain, hairpinning_text, wrap
from ._service import run_service_notify, service_notifier

EXIT_OK, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 2
MAPPING_GRACE = 2.0
"""After a verdict, how long ``probe`` may wait for the NAT mapping to be known too: only
while another observer can still come (see :func:`._cli_probe.mapping_grace_useful`)."""
UDP_GRACE = 8.0
"""Then how long it may wait for the UDP profile: only while a STUN server is known and a
run is under way (:func:`._cli_probe.udp_grace_useful`). A NAT that filters is recognised
when the filtering tests time out (5.5 s at the default udp_rto and udp_sends)."""
HAIRPIN_GRACE = 2.0
"""Last, how long it may wait for ``hairpinning``: only while a test of our confirmed
external address is under way (:func:`._cli_probe.hairpin_grace_useful`); it started
with the verdict, so it is usually done; a NAT that drops the test's connection reports
null rather than make the probe wait the test's 5 s timeout."""


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _load(args: argparse.Namespace, profile: str | None, **extra: Any) -> LoadedConfig:
    try:
        loaded = load_node_config(args, profile=profile, extra=extra)
        check_tls_files(loaded.config)  # a bad TLS file: one line, before anything is logged
    except (ConfigError, ProtocolError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    return loaded


def _config(args: argparse.Namespace, profile: str | None, **extra: Any) -> NodeConfig:
    """The config of a command without structured logs (``probe``): its listen addresses
    are checked before starting (one line, not a restart loop), warnings go to stderr."""
    loaded = _load(args, profile, **extra)
    problems = bind_problems(loaded.config)
    if problems:
        raise CliError("; ".join(problems))
    for warning in loaded.warnings:
        print(f"autonat: warning: {warning}", file=sys.stderr)
    return loaded.config


def _keypair(config: NodeConfig) -> tuple[Keypair | None, bool]:
    """The node's key, loaded (or created) before anything is logged: a bad key file is one
    line. ``(None, False)`` without a key file (a fresh key is made by the node)."""
    data_dir = config.data_dir
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise CliError(f"data directory {data_dir} is not a directory (see --data-dir)")
    if config.key_file is None:
        return None, False
    try:
        return load_or_create_keypair(config.key_file)
    except KeyFileError as exc:
        raise CliError(str(exc)) from exc


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C: a KeyboardInterrupt, bare or inside (nested) exception groups from trio."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(KeyboardInterrupt)[0] is not None
    return False


# --- node and boot -------------------------------------------------------------


def cmd_node(args: argparse.Namespace) -> int:
    """Run a node until SIGINT/SIGTERM."""
    return _run_daemon(args, "default")


def cmd_boot(args: argparse.Namespace) -> int:
    """Run a bootstrap node (config/boot.toml profile) until SIGINT/SIGTERM."""
    return _run_daemon(args, "boot")


def _run_daemon(args: argparse.Namespace, profile: str) -> int:
    loaded = _load(args, profile)
    config, notes = free_default_ports(loaded.config, loaded.explicit)
    problems = bind_problems(config)
    if problems:
        raise CliError("; ".join(problems))
    with data_dir_lock(config.data_dir):
        keypair, created = _keypair(config)
        configure_logging(config.logging.log_format, config.logging.log_level)
        log = get_logger("actors.cli", actor="cli")
        log.info("configuration loaded", profile=loaded.profile, profile_file=loaded.profile_file,
                 config_file=None if loaded.config_file is None else str(loaded.config_file),
                 key_file=None if config.key_file is None else str(config.key_file))
        if created:
            log.warning("created a new key file", key_file=str(config.key_file))
        for warning in (*loaded.warnings, *notes):
            log.warning(warning)
        try:
            trio.run(_daemon, config, keypair)
        except BaseException as exc:  # user-facing causes become one line, the rest re-raise
            if is_interrupt(exc):
                raise
            cause = user_facing_cause(exc)
            if cause is None:
                raise
            raise CliError(_cause_line(cause)) from exc
    return EXIT_OK


LOCK_FILE_NAME = ".lock"


@contextlib.contextmanager
def data_dir_lock(data_dir: Path | None) -> Iterator[None]:
    """Hold ``data_dir`` for this process: one node per data directory (and so per key).

    An advisory ``flock`` on ``<data_dir>/.lock``, which holds the pid of its
    owner; the kernel releases it when the process ends, however it ends, so
    a crashed node never leaves the directory locked. A second node pointed
    at the same directory stops with one line instead of sharing the key.
    """
    if data_dir is None:
        yield
        return
    if data_dir.exists() and not data_dir.is_dir():
        raise CliError(f"data directory {data_dir} is not a directory (see --data-dir)")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CliError(f"cannot use data directory {data_dir}: {exc.strerror or exc} "
                       "(see --data-dir)") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            raise CliError(f"data directory {data_dir} is in use by another autonat process "
                           f"(pid {holder}); give this one its own with --data-dir DIR") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _cause_line(cause: Exception) -> str:
    """One line for a user-facing cause; a failed listen gets the hint its errno calls for."""
    if isinstance(cause, OSError) and cause.errno is not None and cause.strerror:
        text = cause.strerror
        if "cannot listen on" in text:
            return text + bind_hint(cause)
        return f"{text}: {cause.filename}" if cause.filename else text
    return str(cause)


def user_facing_cause(exc: BaseException) -> OSError | KeyFileError | ConfigError | None:
    """The OS, key-file or config (e.g. TLS file) error behind ``exc``, through exception
    groups and escalations.

    A busy port or an unreadable key surfaces from deep inside the node's
    nurseries (wrapped in groups, or as the cause of a supervisor escalation);
    the user needs the one line that says what was wrong.
    """
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError | KeyFileError | ConfigError):
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
    return None


async def _daemon(config: NodeConfig, keypair: Keypair | None = None) -> None:
    log = get_logger("actors.cli", actor="cli")
    notifier = _service_notifier()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(config, keypair=keypair) as node, trio.open_nursery() as nursery:
            http = "off"
            if config.http.http_listen:
                host, port = parse_host_port(config.http.http_listen)
                from ._http_api import serve_http  # here: `probe` never loads hypercorn

                bound = await nursery.start(serve_http, node, host, port)
                http = f"http://{host_port(bound[0], bound[1])}"
            print(f"peer id {node.peer_id}", flush=True)
            for addr in node.listen_addrs:
                print(f"listening on {addr}", flush=True)
            print(f"http api {http}", flush=True)
            log.info("node running", node=str(node.peer_id), http=http)
            if notifier is not None:  # READY=1: listening and serving
                await nursery.start(run_service_notify, node, notifier)
            async for signum in signals:
                log.info("shutting down", signal=signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()


def _service_notifier() -> ServiceNotifier | None:
    """systemd's ``NOTIFY_SOCKET`` (None: not a ``Type=notify`` service); a malformed value
    is one line."""
    try:
        return service_notifier()
    except ValueError as exc:
        raise CliError(str(exc)) from exc


# --- probe ------------------------------------------------------------------------


def cmd_probe(args: argparse.Namespace) -> int:
    """Bootstrap a temporary node, print the NAT verdict, exit 0/2/1.

    Gives up at once (verdict unknown, exit 2) when nothing is left to try: no
    peer connected, no dial or fetch in flight, every --boot-url failed
    definitively (its first fetch ended without a usable address - refused,
    timeout, not HTTP 200, not a /status document - and none succeeded since)
    and every --peer failed definitively (a dial failed - refused, timeout,
    handshake, wrong peer id - and it has not connected since). The result
    (--json: one object) carries 'reason' (null with a verdict, else why there
    is none) and 'servers_contacted'. On a terminal, progress lines go to stderr.
    """
    if args.timeout <= 0:
        raise CliError(f"--timeout must be > 0, got {args.timeout}")
    listen = () if args.listen else ("/ip4/0.0.0.0/tcp/0/ws",)
    extra: dict[str, Any] = {"http_listen": "", "data_dir": "", "key_file": ""}
    if listen:
        extra["listen"] = listen
    config = _config(args, None, **extra)
    if not (config.bootstrap.boot_urls or config.peers):
        raise CliError("nothing to probe against: give --boot-url URL or --peer MULTIADDR")
    configure_logging(config.logging.log_format if args.log_format else "console",
                      config.logging.log_level if args.log_level else "warning")
    try:
        result, lan_ips = trio.run(_probe, config, args.timeout,
                                   ProgressPrinter(progress_stream(sys.stderr)))
    except (OSError, ConfigError) as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result))
    else:
        _print_probe(result)
        facts = ProfileFacts.from_document(result, listen_port=_fixed_port(config.listen),
                                           lan_ips=lan_ips)
        _print_explanation(facts)
    return EXIT_UNKNOWN if result["nat_status"] == "unknown" else EXIT_OK


async def _probe(config: NodeConfig, timeout: float, progress: ProgressPrinter | None = None,
                 ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Run a node until a verdict (plus the mapping grace), a dead end, or ``timeout``:
    the result (``--json``) and our local IPs on the connections (for the explanation).

    ``reason`` is None with a verdict, else why there is none: the dead end
    (every source failed definitively, see ``actors.surfaces._cli_probe``) or what the
    node lacked at the timeout.
    """
    start = time.monotonic()
    progress = progress if progress is not None else ProgressPrinter(None)
    reason: str | None = None
    decided: float | None = None  # when the verdict (or the dead end) came
    async with open_node(config) as node:
        with trio.move_on_after(timeout):
            reason = await wait_for_verdict(node, progress)
            decided = time.monotonic()
            if reason is None:
                await wait_for_mapping(node, progress, MAPPING_GRACE)
                await wait_for_udp(node, progress, UDP_GRACE)
                await wait_for_hairpin(node, progress, HAIRPIN_GRACE)
        snap = node.snapshot()
        stats = node.statistics()
        if snap.nat_status != "unknown":
            reason = None
        elif reason is None:
            reason = no_verdict_reason(probe_facts(config, snap, stats))
    finished = time.monotonic()
    elapsed = round((finished if decided is None else decided) - start, 3)
    total = round(finished - start, 3)
    progress.note(f"probe: done after {total:g} s: {snap.nat_status}"
                  + (f" ({reason})" if reason else ""))
    servers = stats.servers_answered
    lan_ips = tuple(str(ip.host) for ip in snap.local_ips)
    return {
        "peer_id": str(snap.peer_id),
        "nat_status": snap.nat_status,
        "nat_mapping": snap.nat_mapping,
        "nat_filtering": snap.nat_filtering,
        "reachable_addrs": [str(a) for a in snap.reachable_addrs],
        "unreachable_addrs": [str(a) for a in snap.unreachable_addrs],
        "observed_addrs": sorted({str(o.observed) for o in snap.observed_addrs}),
        "servers": [str(s) for s in servers],
        "servers_contacted": [str(s) for s in stats.servers_contacted],
        "udp": {"mapping": snap.udp.mapping.value, "filtering": snap.udp.filtering.value},
        "hairpinning": snap.hairpinning,
        "reason": reason,
        "elapsed_s": elapsed,
        "total_s": total,
    }, lan_ips


def _fixed_port(listen: tuple[str, ...]) -> int | None:
    """The TCP port of the first listen address that names one (None: port 0, random)."""
    for text in listen:
        try:
            port = WsAddress.parse(text).port
        except (ProtocolError, ValueError):
            continue
        if port:
            return port
    return None


def _print_explanation(facts: ProfileFacts) -> None:
    print()
    print("what this means")
    for line in wrap(explain(facts)):
        print(line)


def _print_probe(result: dict[str, Any]) -> None:
    print(f"nat status   {result['nat_status']}")
    print(f"nat mapping  {result['nat_mapping']}")
    print(f"nat filtering {result['nat_filtering']}")
    for key, label in (("reachable_addrs", "reachable "), ("unreachable_addrs", "unreachable"),
                       ("observed_addrs", "observed as")):
        for addr in result[key]:
            print(f"{label}  {addr}")
    udp = result["udp"]
    print(f"udp          mapping {udp['mapping']}, filtering {udp['filtering']}")
    print(f"hairpinning  {hairpinning_text(result.get('hairpinning'))}")
    print(f"servers      {len(result['servers'])} answered, "
          f"{len(result['servers_contacted'])} asked")
    if result["reason"]:
        print(f"reason       {result['reason']}")
    print(f"elapsed      {result['elapsed_s']} s to the verdict, {result['total_s']} s in all")


# --- connect ----------------------------------------------------------------------


def cmd_connect(args: argparse.Namespace) -> int:
    """Run a temporary node, connect to TARGET and print the path: direct, hole-punched
    (a relayed connection replaced by a direct one) or relayed (and why the hole punch
    did not work). TARGET is a multiaddr (.../p2p/ID, or a relayed
    .../p2p/RELAY/p2p-circuit/p2p/ID) or a peer id the boot list or the node's peers
    make known (its addresses are tried directly, then circuits through the connected
    relays). Exit status 0 when connected, 1 when not or on an error.
    """
    if args.timeout <= 0:
        raise CliError(f"--timeout must be > 0, got {args.timeout}")
    try:
        parse_target(args.target)
    except TargetError as exc:
        raise CliError(str(exc)) from exc
    listen = () if args.listen else ("/ip4/0.0.0.0/tcp/0/ws",)
    extra: dict[str, Any] = {"http_listen": "", "data_dir": "", "key_file": ""}
    if listen:
        extra["listen"] = listen
    config = _config(args, None, **extra)
    configure_logging(config.logging.log_format if args.log_format else "console",
                      config.logging.log_level if args.log_level else "warning")
    try:
        result = trio.run(_connect, config, args.target, args.timeout)
    except (OSError, ConfigError) as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result))
    else:
        print_connect(result)
    return EXIT_OK if result["path"] else EXIT_ERROR


async def _connect(config: NodeConfig, target: str, timeout: float) -> dict[str, Any]:
    """Bootstrap (until a peer is connected, within ``timeout``), then connect."""
    started = trio.current_time()
    async with open_node(config) as node:
        if config.bootstrap.boot_urls or config.peers:
            with trio.move_on_after(timeout):
                await node.wait_for(lambda s: bool(s.connections))
        remaining = max(0.1, timeout - (trio.current_time() - started))
        return await connect_to(node, target, remaining)


# --- status -------------------------------------------------------------------------


def read_api(http: str, path: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``path`` of the node API at ``http`` (``HOST:PORT``): its JSON object, or a
    :class:`CliError` saying what failed and what to check."""
    try:
        host, port = parse_host_port(http)
    except ValueError as exc:
        raise CliError(f"--http: {exc}") from exc
    url = f"http://{host_port(host, port)}{path}"
    import httpx  # here: the commands that need no HTTP client start faster

    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise CliError(f"cannot read {url}: {exc} (is a node running with --http "
                       f"{http}?)") from exc
    if not isinstance(document, dict):
        raise CliError(f"{url} did not return a JSON object")
    return document


def cmd_status(args: argparse.Namespace) -> int:
    """Read a running node's /status and summarise it."""
    document = read_api(args.http, "/status")
    if args.json:
        print(json.dumps(document))
        return EXIT_OK
    print_status_facts(document)
    own = [a for a in document.get("peer_addrs") or []
           if isinstance(a, str) and a.endswith(f"/p2p/{document.get('peer_id')}")]
    _print_explanation(ProfileFacts.from_document(
        document, listen_port=_fixed_port(tuple(own)), one_shot=False))
    return EXIT_OK


def print_status_facts(document: dict[str, Any]) -> None:
    """The ``KEY  value`` lines of ``autonat status`` (without the explanation)."""
    for key in ("peer_id", "state", "nat_status", "nat_mapping", "nat_filtering", "connections",
                "peers_count", "probes_served", "uptime_s", "version"):
        if key in document:
            print(f"{key:<16}{document[key]}")
    udp = document.get("udp")
    if isinstance(udp, dict):
        print(f"{'udp':<16}mapping {udp.get('mapping')}, filtering {udp.get('filtering')}")
    if "hairpinning" in document:
        print(f"{'hairpinning':<16}{hairpinning_text(document['hairpinning'])}")
    for key in ("reachable_addrs", "observed_addrs", "stun_addrs", "peer_addrs"):
        for addr in document.get(key) or []:
            print(f"{key[:-1]:<16}{addr}")


# --- demo --loopback -------------------------------------------------------------------


def cmd_loopback_demo(args: argparse.Namespace) -> int:
    """``autonat demo --loopback``: 3 boot nodes and a newcomer on loopback WebSockets,
    from an HTTP ``/status`` bootstrap to a verdict."""
    configure_logging("console", "warning")
    trio.run(_demo)
    return EXIT_OK


async def _demo() -> None:
    lab = AddressPolicy(allow_loopback=True)
    start = time.monotonic()
    async with AsyncExitStack() as stack:
        boots = []
        for i in range(3):
            config = NodeConfig.from_settings(
                listen=(f"/ip4/127.0.5.{i + 1}/tcp/0/ws",), policy=lab, welcome_probes=True,
                http_listen="")
            boots.append(await stack.enter_async_context(open_node(config)))
        for boot in boots[1:]:
            await boots[0].connect(boot.listen_addrs[0])
        nursery = await stack.enter_async_context(trio.open_nursery())
        from ._http_api import serve_http  # here: `probe` never loads hypercorn

        host, port = await nursery.start(serve_http, boots[0], "127.0.5.1", 0)
        url = f"http://{host_port(host, port)}/status"
        print(f"boot nodes: {', '.join(str(b.peer_id)[-8:] for b in boots)}; /status at {url}")
        newcomer_config = NodeConfig.from_settings(
            listen=("/ip4/127.0.5.9/tcp/0/ws",), policy=lab, boot_urls=(url,), http_listen="")
        newcomer = await stack.enter_async_context(open_node(newcomer_config))
        print(f"newcomer {newcomer.peer_id} bootstraps from {url}")
        with trio.fail_after(30):
            snap = await newcomer.wait_for(lambda s: s.nat_status != "unknown")
            print(f"  verdict after {time.monotonic() - start:.3f} s: {snap.nat_status}, "
                  f"reachable at {', '.join(str(a) for a in snap.reachable_addrs) or '-'}")
            snap = await newcomer.wait_for(_fully_connected)
            print(f"  lifecycle: {snap.lifecycle.value} after {time.monotonic() - start:.3f} s "
                  f"({len(snap.connected_peers)} peers, probed by a bootstrap peer)")
        import httpx

        async with httpx.AsyncClient(trust_env=False) as client:
            document = (await client.get(url)).json()
        print(f"boot node /status: {json.dumps(document)}")
        nursery.cancel_scope.cancel()
    sys.stdout.flush()


def _fully_connected(snap: NodeSnapshot) -> bool:
    return snap.lifecycle.value == "fully_connected"
