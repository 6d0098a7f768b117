"""The ``autonat`` command line: parse arguments, dispatch to a command.

Each command is a small function taking the parsed namespace and returning
an exit status. User errors (bad flag, unreadable or corrupt file) print one
line on stderr starting with ``autonat:`` and exit non-zero - never a
traceback. Commands that need the network come with later issues; ``--help``
lists only what exists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from protocols import KeyFileError, load_or_create_keypair

KEY_FILE_NAME = "p2p_keypair.ser"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line, with a pointer to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def default_data_dir() -> Path:
    """``$AUTONAT_DATA_DIR``, else ``$XDG_DATA_HOME/trio-autonat``, else ``~/.local/share``."""
    explicit = os.environ.get("AUTONAT_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "trio-autonat"


def _key_path(args: argparse.Namespace) -> Path:
    if args.key is not None:
        return Path(args.key)
    return default_data_dir() / KEY_FILE_NAME


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


def cmd_demo(args: argparse.Namespace) -> int:
    """Show this machine's node identity (the full local demo arrives with the node)."""
    path = _key_path(args)
    try:
        keypair, created = load_or_create_keypair(path)
    except KeyFileError as exc:
        raise CliError(str(exc)) from exc
    state = "created" if created else "loaded"
    print(f"node identity ({state} {path}):")
    print(f"  peer id     {keypair.peer_id}")
    print(f"  public key  {keypair.public_key.to_protobuf().hex()}  (libp2p protobuf)")
    print(f"  listen addr /ip4/0.0.0.0/tcp/44000/ws/p2p/{keypair.peer_id}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="autonat",
        description="NAT detection and bootstrapping node (libp2p peer ids, AutoNAT v2 over "
        "WebSockets).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    key_help = f"key file (64-byte raw Ed25519 keypair; default: DATA_DIR/{KEY_FILE_NAME})"

    p_id = sub.add_parser("id", help="print this node's peer id (creates the key if missing)",
                          description=cmd_id.__doc__)
    p_id.add_argument("--key", metavar="FILE", help=key_help)
    p_id.add_argument("--json", action="store_true", help="print a JSON object")
    p_id.set_defaults(func=cmd_id)

    p_demo = sub.add_parser("demo", help="local demonstration", description=cmd_demo.__doc__)
    p_demo.add_argument("--key", metavar="FILE", help=key_help)
    p_demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return func(args)
    except CliError as exc:
        print(f"autonat: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
