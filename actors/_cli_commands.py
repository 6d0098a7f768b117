"""The CLI's node-running commands: ``node``, ``boot``, ``probe``, ``status``, ``demo``.

Each ``cmd_*`` takes the parsed arguments and returns the exit status; user
errors are raised as :class:`CliError` (one line, exit 1). ``node`` and
``boot`` run until SIGINT or SIGTERM and then shut down cleanly (actors stop
in reverse order, the peer store is saved, the HTTP server drains).
``probe`` runs a temporary node until it has a verdict or times out.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import httpx
import structlog
import trio

from protocols import (
    AddressPolicy,
    ConfigError,
    KeyFileError,
    NodeConfig,
    NodeSnapshot,
    ProtocolError,
    parse_host_port,
)

from ._cli_settings import busy_ports, explicit_keys, free_default_ports, node_config
from ._http_api import serve_http
from ._logsetup import configure_logging
from ._metrics import StatisticsProviders
from ._node import Node, open_node

EXIT_OK, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 2
MAPPING_GRACE = 2.0
"""After a verdict, how long ``probe`` waits for a NAT mapping to be known too."""


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _config(args: argparse.Namespace, profile: str | None, **extra: Any) -> NodeConfig:
    try:
        return node_config(args, profile=profile, extra=extra)
    except (ConfigError, ProtocolError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def providers(node: Node) -> StatisticsProviders:
    return StatisticsProviders(
        probes_sent=lambda: node.statistics().probes,
        probes_served=lambda: node.statistics().probes_answered,
        bootstrap_fetches=lambda: node.statistics().bootstrap.by_outcome())


# --- node and boot -------------------------------------------------------------


def cmd_node(args: argparse.Namespace) -> int:
    """Run a node until SIGINT/SIGTERM."""
    return _run_daemon(args, "default")


def cmd_boot(args: argparse.Namespace) -> int:
    """Run a bootstrap node (config/boot.toml profile) until SIGINT/SIGTERM."""
    return _run_daemon(args, "boot")


def _run_daemon(args: argparse.Namespace, profile: str) -> int:
    config, notes = free_default_ports(_config(args, profile), explicit_keys(args))
    taken = busy_ports(config)
    if taken:
        raise CliError(f"address already in use: {', '.join(taken)} "
                       "(is another node running? choose another port)")
    configure_logging(config.log_format, config.log_level)
    for note in notes:
        structlog.get_logger("actors.cli").warning(note)
    try:
        trio.run(_daemon, config)
    except BaseException as exc:  # user-facing causes become one line, the rest re-raise
        cause = user_facing_cause(exc)
        if cause is None:
            raise
        hint = " (is another node using the port?)" if isinstance(cause, OSError) else ""
        raise CliError(f"{cause}{hint}") from exc
    return EXIT_OK


def user_facing_cause(exc: BaseException) -> OSError | KeyFileError | None:
    """The OS or key-file error behind ``exc``, through exception groups and escalations.

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
        if isinstance(current, OSError | KeyFileError):
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
    return None


async def _daemon(config: NodeConfig) -> None:
    log = structlog.get_logger("actors.cli").bind(actor="cli")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(config) as node, trio.open_nursery() as nursery:
            http = "off"
            if config.http_listen:
                host, port = parse_host_port(config.http_listen)
                bound = await nursery.start(
                    partial(serve_http, providers=providers(node)), node, host, port)
                http = f"http://{bound[0]}:{bound[1]}"
            print(f"peer id {node.peer_id}", flush=True)
            for addr in node.listen_addrs:
                print(f"listening on {addr}", flush=True)
            print(f"http api {http}", flush=True)
            log.info("node running", peer=str(node.peer_id), http=http)
            async for signum in signals:
                log.info("shutting down", signal=signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()


# --- probe ------------------------------------------------------------------------


def cmd_probe(args: argparse.Namespace) -> int:
    """Bootstrap a temporary node, print the NAT verdict, exit 0/2/1."""
    if args.timeout <= 0:
        raise CliError(f"--timeout must be > 0, got {args.timeout}")
    listen = () if args.listen else ("/ip4/0.0.0.0/tcp/0/ws",)
    extra: dict[str, Any] = {"http_listen": "", "data_dir": "", "key_file": ""}
    if listen:
        extra["listen"] = listen
    config = _config(args, None, **extra)
    if not (config.boot_urls or config.peers):
        raise CliError("nothing to probe against: give --boot-url URL or --peer MULTIADDR")
    configure_logging(config.log_format if args.log_format else "console",
                      config.log_level if args.log_level else "warning")
    try:
        result = trio.run(_probe, config, args.timeout)
    except OSError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result))
    else:
        _print_probe(result)
    return EXIT_UNKNOWN if result["nat_status"] == "unknown" else EXIT_OK


async def _probe(config: NodeConfig, timeout: float) -> dict[str, Any]:
    start = time.monotonic()
    async with open_node(config) as node:
        with trio.move_on_after(timeout):
            await node.wait_for(lambda s: s.nat_status != "unknown")
            with trio.move_on_after(MAPPING_GRACE):
                await node.wait_for(lambda s: s.nat_mapping != "unknown")
        snap = node.snapshot()
        servers = node.statistics().servers_answered
    return {
        "peer_id": str(snap.peer_id),
        "nat_status": snap.nat_status,
        "nat_mapping": snap.nat_mapping,
        "reachable_addrs": [str(a) for a in snap.reachable_addrs],
        "unreachable_addrs": [str(a) for a in snap.unreachable_addrs],
        "observed_addrs": sorted({str(o.observed) for o in snap.observed_addrs}),
        "servers": [str(s) for s in servers],
        "elapsed_s": round(time.monotonic() - start, 3),
    }


def _print_probe(result: dict[str, Any]) -> None:
    print(f"nat status   {result['nat_status']}")
    print(f"nat mapping  {result['nat_mapping']}")
    for key, label in (("reachable_addrs", "reachable "), ("unreachable_addrs", "unreachable"),
                       ("observed_addrs", "observed as")):
        for addr in result[key]:
            print(f"{label}  {addr}")
    print(f"servers      {len(result['servers'])} answered")
    print(f"elapsed      {result['elapsed_s']} s")


# --- status -------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """Read a running node's /status and summarise it."""
    try:
        host, port = parse_host_port(args.http)
    except ValueError as exc:
        raise CliError(f"--http: {exc}") from exc
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/status"
    try:
        response = httpx.get(url, timeout=5.0, trust_env=False)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise CliError(f"cannot read {url}: {exc} (is a node running with --http "
                       f"{args.http}?)") from exc
    if not isinstance(document, dict):
        raise CliError(f"{url} did not return a JSON object")
    if args.json:
        print(json.dumps(document))
        return EXIT_OK
    for key in ("peer_id", "state", "nat_status", "nat_mapping", "connections", "peers_count",
                "probes_served", "uptime_s", "version"):
        if key in document:
            print(f"{key:<16}{document[key]}")
    for key in ("reachable_addrs", "observed_addrs", "peer_addrs"):
        for addr in document.get(key) or []:
            print(f"{key[:-1]:<16}{addr}")
    return EXIT_OK


# --- demo ------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Local demo: 3 boot nodes and a newcomer on loopback, from bootstrap to verdict."""
    configure_logging("console", "warning")
    trio.run(_demo)
    return EXIT_OK


async def _demo() -> None:
    lab = AddressPolicy(allow_loopback=True)
    start = time.monotonic()
    async with AsyncExitStack() as stack:
        boots = []
        for i in range(3):
            config = NodeConfig(listen=(f"/ip4/127.0.5.{i + 1}/tcp/0/ws",), policy=lab,
                                welcome_probes=True, http_listen="")
            boots.append(await stack.enter_async_context(open_node(config)))
        for boot in boots[1:]:
            await boots[0].connect(boot.listen_addrs[0])
        nursery = await stack.enter_async_context(trio.open_nursery())
        host, port = await nursery.start(
            partial(serve_http, providers=providers(boots[0])), boots[0], "127.0.5.1", 0)
        url = f"http://{host}:{port}/status"
        print(f"boot nodes: {', '.join(str(b.peer_id)[-8:] for b in boots)}; /status at {url}")
        newcomer_config = NodeConfig(listen=("/ip4/127.0.5.9/tcp/0/ws",), policy=lab,
                                     boot_urls=(url,), http_listen="")
        newcomer = await stack.enter_async_context(open_node(newcomer_config))
        print(f"newcomer {newcomer.peer_id} bootstraps from {url}")
        with trio.fail_after(30):
            snap = await newcomer.wait_for(lambda s: s.nat_status != "unknown")
            print(f"  verdict after {time.monotonic() - start:.3f} s: {snap.nat_status}, "
                  f"reachable at {', '.join(str(a) for a in snap.reachable_addrs) or '-'}")
            snap = await newcomer.wait_for(_fully_connected)
            print(f"  lifecycle: {snap.lifecycle.value} after {time.monotonic() - start:.3f} s "
                  f"({len(snap.connected_peers)} peers, probed by a bootstrap peer)")
        async with httpx.AsyncClient(trust_env=False) as client:
            document = (await client.get(url)).json()
        print(f"boot node /status: {json.dumps(document)}")
        nursery.cancel_scope.cancel()
    sys.stdout.flush()


def _fully_connected(snap: NodeSnapshot) -> bool:
    return snap.lifecycle.value == "fully_connected"
