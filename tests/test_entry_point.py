"""The ``autonat`` entry point and the lazy ``actors`` facade, in fresh interpreters.

``import actors`` must load no layer (so not Trio either): the command line's
dependencies then load inside ``actors.cli.main``, where a Ctrl-C becomes the
documented one-line exit 130 instead of a traceback. The facade must still
resolve every public name.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import actors

# A Ctrl-C that lands while Trio is being imported, made deterministic: an
# import hook raises KeyboardInterrupt exactly there.
_INTERRUPT_WHILE_IMPORTING_TRIO = textwrap.dedent("""
    import sys

    class Interrupt:
        def find_spec(self, name, path=None, target=None):
            if name == "trio":
                raise KeyboardInterrupt
            return None

    sys.meta_path.insert(0, Interrupt())
    import actors.cli
    sys.exit(actors.cli.main(["status", "--http", "127.0.0.1:1"]))
""")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_130() -> None:
    out = _python(_INTERRUPT_WHILE_IMPORTING_TRIO)
    assert (out.returncode, out.stdout, out.stderr) == (130, "", "autonat: interrupted\n")


def test_importing_the_facade_loads_no_layer() -> None:
    out = _python("import sys, actors, actors.cli; "
                  "print(sorted(m for m in sys.modules if m == 'trio' or m.startswith('actors.')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['actors.cli']"


def test_every_public_name_resolves_from_a_fresh_import() -> None:
    out = _python("import actors; missing = [n for n in actors.__all__ "
                  "if getattr(actors, n, None) is None]; print(missing)")
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr


def test_the_facade_is_the_layers_own_objects() -> None:
    from actors.node import open_node
    from actors.runtime import Supervisor

    assert actors.open_node is open_node and actors.Supervisor is Supervisor
    assert set(actors.__all__) <= set(dir(actors))
    try:
        actors.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_the_command_line_loads_no_http_server_until_a_command_needs_one() -> None:
    # what `autonat probe` loads: the parser and every command's code, but neither
    # hypercorn nor prometheus_client, and no HTTP client until a boot URL is fetched
    heavy = ("hypercorn", "prometheus_client", "httpx")
    out = _python("import sys, actors.surfaces._cli, actors.surfaces._cli_commands, "
                  "actors.surfaces._cli_probe, actors.node; "
                  f"print([m for m in {heavy!r} if m in sys.modules])")
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr
    out = _python("import sys, actors.surfaces; actors.surfaces.serve_http; "
                  "print('hypercorn' in sys.modules)")
    assert (out.returncode, out.stdout.strip()) == (0, "True"), out.stderr
