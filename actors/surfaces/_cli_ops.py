"""Everyday commands for an operator: ``peers``, ``status --watch``, ``completion``.

Theory of operation
-------------------
``autonat peers`` and ``autonat status --watch`` are clients of a running
node's HTTP API (``GET /peers``, ``GET /status``; see
:mod:`actors.surfaces._http_api`), like ``ipfs swarm peers`` and
``watch ipfs stats``: they start no node and hold no key. ``--watch``
redraws the summary every ``--interval`` seconds (clearing the screen on a
terminal, separating frames with a blank line otherwise) and keeps going
when the node is briefly unreachable (a restart), showing the error in the
frame; Ctrl-C ends it with exit status 0 - stopping a watch is its normal end.

``autonat completion bash|zsh`` prints a completion script generated from
the argparse parser itself (commands, their flags, flag choices, file
arguments), so it never drifts from the real command line. Install with
``autonat completion bash > /etc/bash_completion.d/autonat`` or, for zsh,
into a directory of ``$fpath`` as ``_autonat``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from typing import Any, TextIO

from ._cli_commands import CliError, cmd_status, print_status_facts, read_api

__all__ = [
    "add_ops_commands",
    "add_watch_flags",
    "bash_completion",
    "cmd_peers",
    "cmd_status_or_watch",
    "zsh_completion",
]

EXIT_OK = 0
CLEAR_SCREEN = "\x1b[H\x1b[2J"
MIN_INTERVAL = 0.1
DEFAULT_HTTP = "127.0.0.1:7888"
FILE_METAVARS = frozenset({"FILE", "DIR", "PATH"})


# --- peers ----------------------------------------------------------------------------------


def cmd_peers(args: argparse.Namespace) -> int:
    """List the connected peers of a running node (its /peers): id, address,
    direction, path, agent, connected since."""
    document = read_api(args.http, "/peers")
    if args.json:
        print(json.dumps(document))
        return EXIT_OK
    rows = document.get("peers")
    if not isinstance(rows, list):
        raise CliError(f"--http {args.http}: /peers has no 'peers' list (an older node? "
                       "upgrade it, or use 'autonat status')")
    for line in peer_table(rows):
        print(line)
    count = document.get("count", len(rows))
    more = " (list truncated)" if document.get("truncated") else ""
    print(f"{count} connected peer{'' if count == 1 else 's'}{more}")
    return EXIT_OK


def peer_table(rows: list[Any]) -> Iterator[str]:
    """Aligned lines: a header, then one line per connection (the address last: wide)."""
    header = ("PEER", "DIRECTION", "PATH", "SINCE", "AGENT", "ADDRESS")
    table = [header] + [_peer_row(row) for row in rows if isinstance(row, dict)]
    if len(table) == 1:
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        yield "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)),
                         row[-1]]).rstrip()


def _peer_row(row: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    return (str(row.get("peer_id", "?")), str(row.get("direction") or "-"),
            str(row.get("path", "?")), _age(row.get("connected_s")),
            str(row.get("agent") or "-"), str(row.get("address") or "-"))


def _age(seconds: object) -> str:
    """``42s``, ``5m03s``, ``2h07m``, ``3d04h`` (a duration for a person)."""
    if not isinstance(seconds, int | float) or seconds < 0:
        return "?"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# --- status --watch ---------------------------------------------------------------------------


def add_watch_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--watch", action="store_true",
                        help="refresh the summary until Ctrl-C (exit 0)")
    parser.add_argument("--interval", type=float, default=2.0, metavar="S",
                        help="seconds between refreshes with --watch (default 2)")


def cmd_status_or_watch(args: argparse.Namespace) -> int:
    """``autonat status``, or with ``--watch`` its summary refreshed until Ctrl-C."""
    if not getattr(args, "watch", False):
        return cmd_status(args)
    if args.json:
        raise CliError("--watch and --json do not go together: poll 'autonat status --json' "
                       "or GET /status instead")
    if args.interval < MIN_INTERVAL:
        raise CliError(f"--interval must be >= {MIN_INTERVAL} seconds, got {args.interval}")
    return watch(lambda: read_api(args.http, "/status", timeout=min(5.0, args.interval + 1)),
                 args.interval, sys.stdout)


@dataclass(frozen=True)
class _Frame:
    at: str
    document: dict[str, Any] | None
    error: str | None


def watch(read: Callable[[], dict[str, Any]], interval: float, out: TextIO,
          sleep: Callable[[float], None] | None = None) -> int:
    """Draw a frame every ``interval`` seconds until Ctrl-C; exit status 0.

    Ctrl-C sets a flag instead of raising ``KeyboardInterrupt`` wherever the
    main thread happens to be: raised inside the HTTP client, between a lock's
    acquisition and its ``with`` block, it left the lock held and the watch
    hung for good (seen under load). The watch ends after the current read
    (bounded by its timeout). ``sleep`` replaces the wait (tests; a
    ``KeyboardInterrupt`` it raises ends the watch too)."""
    tty = out.isatty()
    stop = threading.Event()
    restore = _stop_on_sigint(stop) if sleep is None else None
    pause = sleep if sleep is not None else stop.wait
    try:
        while not stop.is_set():
            try:
                frame = _Frame(time.strftime("%H:%M:%S"), read(), None)
            except CliError as exc:
                frame = _Frame(time.strftime("%H:%M:%S"), None, str(exc))
            _draw(frame, interval, out, tty)
            pause(interval)
    except KeyboardInterrupt:
        pass
    finally:
        if restore is not None:
            restore()
    if tty:
        out.write("\n")
    out.flush()
    return EXIT_OK


def _stop_on_sigint(stop: threading.Event) -> Callable[[], object] | None:
    """SIGINT sets ``stop`` (main thread only; elsewhere None: nothing to restore)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    return lambda: signal.signal(signal.SIGINT, previous)


def _draw(frame: _Frame, interval: float, out: TextIO, tty: bool) -> None:
    out.write(CLEAR_SCREEN if tty else "\n")
    out.write(f"autonat status every {interval:g}s at {frame.at} (Ctrl-C to stop)\n\n")
    if frame.document is None:
        out.write(f"unreachable: {frame.error}\n")
    else:
        with redirect_stdout(out):
            print_status_facts(frame.document)
    out.flush()


# --- completion --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Option:
    flags: tuple[str, ...]
    takes_value: bool
    choices: tuple[str, ...]
    files: bool
    help: str


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    options: tuple[_Option, ...]
    positionals: tuple[tuple[str, ...], ...]  # the choices of each positional


def _commands(parser: argparse.ArgumentParser) -> tuple[_Command, ...]:
    """The subcommands of ``parser`` with their options, read from argparse."""
    out = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            options, positionals = [], []
            for opt in sub._actions:
                choices = tuple(str(c) for c in opt.choices or ())
                if opt.option_strings:
                    options.append(_Option(
                        tuple(opt.option_strings), opt.nargs != 0, choices,
                        str(opt.metavar or "").upper() in FILE_METAVARS,
                        _plain(opt.help or "")))
                else:
                    positionals.append(choices)
            out.append(_Command(name, _plain(helps.get(name, "")), tuple(options),
                                tuple(positionals)))
    return tuple(out)


def _plain(text: str) -> str:
    """Help text safe inside a zsh ``[...]`` spec and a ``name:description`` pair."""
    text = text.replace("%(default)s", "").split(". ")[0]
    for char in "[]:'\\`$\"":
        text = text.replace(char, " ")
    return " ".join(text.split())[:70]


def _top_flags(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions
            if not isinstance(action, argparse._SubParsersAction)
            for flag in action.option_strings]


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion script for ``parser`` (``complete -F _autonat autonat``)."""
    commands = _commands(parser)
    words = [c.name for c in commands] + _top_flags(parser)
    lines = [
        "# bash completion for autonat (generated by 'autonat completion bash')",
        "_autonat() {",
        '    local cur prev cmd="" i opts=""',
        '    cur="${COMP_WORDS[COMP_CWORD]}"',
        '    prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in',
        "            -*) ;;",
        '            *) cmd="${COMP_WORDS[i]}"; break ;;',
        "        esac",
        "    done",
        '    if [[ -z "$cmd" ]]; then',
        f'        COMPREPLY=($(compgen -W {shlex.quote(" ".join(words))} -- "$cur"))',
        "        return 0",
        "    fi",
        '    case "$cmd" in',
    ]
    for command in commands:
        flags = " ".join(f for o in command.options for f in o.flags)
        lines.append(f"        {command.name})")
        lines.append(f"            opts={shlex.quote(flags)}")
        lines.append('            case "$prev" in')
        for option in command.options:
            if not option.takes_value:
                continue
            pattern = "|".join(option.flags)
            if option.choices:
                values = shlex.quote(" ".join(option.choices))
                lines.append(f'                {pattern}) COMPREPLY=($(compgen -W {values} '
                             '-- "$cur")); return 0 ;;')
            elif option.files:
                lines.append(f'                {pattern}) COMPREPLY=($(compgen -f -- "$cur")); '
                             "return 0 ;;")
            else:
                lines.append(f"                {pattern}) return 0 ;;")
        lines.append("            esac")
        for choices in command.positionals:
            if choices:
                values = shlex.quote(" ".join(choices))
                lines.append(f'            [[ "$cur" != -* ]] && opts={values}')
        lines.append("            ;;")
    lines += [
        "    esac",
        '    COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        "}",
        "complete -F _autonat autonat",
        "",
    ]
    return "\n".join(lines)


def zsh_completion(parser: argparse.ArgumentParser) -> str:
    """A zsh completion function for ``parser`` (``#compdef autonat``)."""
    commands = _commands(parser)
    lines = [
        "#compdef autonat",
        "# zsh completion for autonat (generated by 'autonat completion zsh')",
        "_autonat() {",
        "    local -a commands",
        "    commands=(",
    ]
    lines += [f"        '{c.name}:{c.help}'" for c in commands]
    lines += [
        "    )",
        "    if (( CURRENT == 2 )); then",
        "        _describe -t commands 'autonat command' commands",
        "        return",
        "    fi",
        "    case $words[2] in",
    ]
    for command in commands:
        specs = []
        for option in command.options:
            action = ""
            if option.takes_value:
                action = (":value:(" + " ".join(option.choices) + ")" if option.choices
                          else ":file:_files" if option.files else ":value:")
            names = option.flags
            if len(names) > 1:
                specs.append(f"'({' '.join(names)})'{{{','.join(names)}}}'[{option.help}]"
                             f"{action}'")
            else:
                specs.append(f"'{names[0]}[{option.help}]{action}'")
        for choices in command.positionals:
            if choices:
                specs.append(f"'1:argument:({' '.join(choices)})'")
        lines.append(f"        {command.name})")
        lines.append("            _arguments -s \\")
        lines += [f"                {spec} \\" for spec in specs]
        lines.append("            ;;")
    lines += ["    esac", "}", '_autonat "$@"', ""]
    return "\n".join(lines)


def add_ops_commands(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                     parser: argparse.ArgumentParser) -> None:
    """Register ``peers`` and ``completion`` on ``sub`` (``parser`` is the root, for
    completion)."""
    p_peers = sub.add_parser("peers", help="list a running node's connected peers",
                             description=cmd_peers.__doc__)
    p_peers.add_argument("--http", metavar="HOST:PORT", default=DEFAULT_HTTP,
                         help=f"the node's HTTP API (default {DEFAULT_HTTP})")
    p_peers.add_argument("--json", action="store_true", help="print the /peers JSON document")
    p_peers.set_defaults(func=cmd_peers)

    p_completion = sub.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Print a completion script generated from this command line. bash: "
        "'autonat completion bash > /etc/bash_completion.d/autonat'; zsh: save it as "
        "'_autonat' in a directory of $fpath.")
    p_completion.add_argument("shell", choices=("bash", "zsh"))

    def cmd_completion(args: argparse.Namespace) -> int:
        render = bash_completion if args.shell == "bash" else zsh_completion
        sys.stdout.write(render(parser))
        return EXIT_OK

    p_completion.set_defaults(func=cmd_completion)
