"""The ``autonat`` command line: parse arguments, dispatch to a command.

Each command is a small function taking the parsed namespace and returning
an exit status. User errors (bad flag, unreadable or corrupt file, bad
setting) print one line on stderr starting with ``autonat`` and exit
non-zero - never a traceback. Ctrl-C (SIGINT) prints ``autonat: interrupted``
and exits 130 in every command, except that a running ``node``/``boot``
daemon treats SIGINT like SIGTERM: a clean shutdown, exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from protocols import KeyFileError

from ..node import load_or_create_keypair
from ._cli_commands import (
    CliError,
    cmd_boot,
    cmd_connect,
    cmd_node,
    cmd_probe,
    cmd_status,
    is_interrupt,
)
from ._cli_demo import add_demo_flags, cmd_demo
from ._cli_ops import add_ops_commands, add_watch_flags, cmd_status_or_watch
from ._cli_settings import KEY_FILE_NAME, add_node_flags, default_data_dir
from ._cli_sim import add_sim_flags, cmd_sim

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
DISTRIBUTION = "trio-autonat"


def version() -> str:
    """The installed distribution's version (``importlib.metadata``, loaded when asked)."""
    import importlib.metadata  # here: 30 ms most commands never need

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> NoReturn:
        print(f"autonat {version()}")  # to stdout, as argparse's own version action
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line, with a pointer to --help."""

    commands: Mapping[str, argparse.ArgumentParser] = MappingProxyType({})

    def error(self, message: str) -> NoReturn:
        # probe reserves exit 2 for "verdict still unknown", so its usage errors exit 1
        status = EXIT_ERROR if self.prog.endswith(" probe") else EXIT_USAGE
        self.exit(status, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _key_path(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Path:
    """``--key``, else ``$AUTONAT_KEY_FILE``, else the data directory's key file - the
    key ``autonat node`` would use with the same flags and environment."""
    if args.key is not None:
        return Path(args.key).expanduser()
    if environ.get("AUTONAT_KEY_FILE"):
        return Path(environ["AUTONAT_KEY_FILE"]).expanduser()
    return default_data_dir(environ) / KEY_FILE_NAME


def cmd_id(args: argparse.Namespace) -> int:
    """Print the node's peer id, creating the key file when it is missing."""
    path = _key_path(args)
    try:
        keypair, created = load_or_create_keypair(path)
    except KeyFileError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps({"peer_id": str(keypair.peer_id), "key_file": str(path),
                          "created": created}))
    else:
        print(keypair.peer_id)
        if created:
            print(f"autonat: created new key file {path}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> _Parser:
    parser = _Parser(
        prog="autonat",
        description="NAT detection and bootstrapping node (libp2p peer ids, AutoNAT v2 over "
        "WebSockets).",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    key_help = f"key file (64-byte raw Ed25519 keypair; default: DATA_DIR/{KEY_FILE_NAME})"

    p_id = sub.add_parser("id", help="print this node's peer id (creates the key if missing)",
                          description=cmd_id.__doc__)
    p_id.add_argument("--key", metavar="FILE", help=key_help)
    p_id.add_argument("--json", action="store_true", help="print a JSON object")
    p_id.set_defaults(func=cmd_id)

    p_demo = sub.add_parser("demo", help="live demo: simulated hosts behind every NAT type "
                            "reach their verdicts", description=cmd_demo.__doc__)
    add_demo_flags(p_demo)
    p_demo.set_defaults(func=cmd_demo)

    for name, func, text in (("node", cmd_node, "run a node until SIGINT/SIGTERM"),
                             ("boot", cmd_boot, "run a bootstrap node (config/boot.toml)")):
        p_run = sub.add_parser(name, help=text, description=func.__doc__)
        add_node_flags(p_run)
        p_run.set_defaults(func=func)

    p_probe = sub.add_parser("probe", help="one-shot NAT check: verdict, then exit 0/2/1",
                             description=(cmd_probe.__doc__ or "") + " Exit status: 0 when "
                             "the verdict is public or private, 2 when still unknown at the "
                             "timeout, 1 on an error.")
    add_node_flags(p_probe, probe=True)
    p_probe.add_argument("--timeout", type=float, default=30.0, metavar="S",
                         help="give up after S seconds (default 30)")
    p_probe.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p_probe.set_defaults(func=cmd_probe)

    p_connect = sub.add_parser("connect", help="reach one peer: direct, hole-punched or "
                               "relayed", description=cmd_connect.__doc__)
    p_connect.add_argument("target", metavar="TARGET",
                           help="a multiaddr (.../p2p/ID or .../p2p-circuit/p2p/ID) or a "
                           "peer id")
    add_node_flags(p_connect, probe=True)
    p_connect.add_argument("--timeout", type=float, default=30.0, metavar="S",
                           help="give up after S seconds (default 30)")
    p_connect.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p_connect.set_defaults(func=cmd_connect)

    p_sim = sub.add_parser("sim", help="simulate a network of nodes behind modelled NATs",
                           description=(cmd_sim.__doc__ or "") + " Exit status: 0 when every "
                           "verdict is right, 2 when some is not, 1 on an error.")
    add_sim_flags(p_sim)
    p_sim.set_defaults(func=cmd_sim)

    p_status = sub.add_parser("status", help="summarise a running node's /status",
                              description=cmd_status.__doc__)
    p_status.add_argument("--http", metavar="HOST:PORT", default="127.0.0.1:7888",
                          help="the node's HTTP API (default 127.0.0.1:7888)")
    p_status.add_argument("--json", action="store_true", help="print the raw JSON document")
    p_status.set_defaults(func=cmd_status)
    add_watch_flags(p_status)
    p_status.set_defaults(func=cmd_status_or_watch)
    add_ops_commands(sub, parser)
    parser.commands = dict(sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, leftover = parser.parse_known_args(argv)
    if leftover:  # report unknown flags from the subcommand's parser (its prog, its exit code)
        command = parser.commands.get(getattr(args, "command", None) or "", parser)
        command.error(f"unrecognized arguments: {' '.join(leftover)}")
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return func(args)
    except CliError as exc:
        print(f"autonat: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BaseException as exc:  # Ctrl-C arrives bare or wrapped in trio's exception groups
        if not is_interrupt(exc):
            raise
        print("autonat: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
