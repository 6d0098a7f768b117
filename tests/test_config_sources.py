"""Where settings come from: packaged profiles, the overlaid config file, stray variables,
errors that name the source of a bad value, explicit key files, bind checks with hints.

In-process (no node is started): the CLI's :func:`actors.surfaces._cli_settings.load_node_config`
with an explicit ``environ``, and :func:`protocols.build_node_config` with ``sources``.
The subprocess side of the same behaviour is in ``tests/test_cli_errors.py``.
"""

from __future__ import annotations

import argparse
import errno
import socket
import tomllib
from pathlib import Path

import pytest

from actors import load_config_file
from actors.surfaces import _cli_settings
from actors.surfaces._cli import EXIT_INTERRUPTED, build_parser, main
from actors.surfaces._cli_commands import is_interrupt
from actors.surfaces._cli_settings import (
    bind_hint,
    bind_problems,
    free_default_ports,
    host_port,
    load_node_config,
    node_config,
    profile_text,
)
from protocols import (
    ConfigError,
    HttpConfig,
    NodeConfig,
    build_node_config,
    env_settings,
    env_warnings,
)

ROOT = Path(__file__).resolve().parent.parent
NOT_HERE = "192.0.2.1"
"""TEST-NET-1: never an address of this machine. Only ever bound (fails), never sent to."""


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(tmp_path / "xdg"), **extra}


# --- stray AUTONAT_* variables ---------------------------------------------------------


def test_unknown_environment_variable_is_a_warning_not_an_error() -> None:
    environ = {"AUTONAT_FOO": "1", "AUTONAT_TARGET_PEER": "3", "AUTONAT_TARGET_PEERS": "4",
               "AUTONAT_REGEN_GOLDEN": "1", "AUTONAT_CONFIG": "/x.toml", "HOME": "/root"}
    assert env_settings(environ) == {"target_peers": 4}
    assert env_warnings(environ) == [
        "environment variable AUTONAT_FOO is not a setting; ignored",
        "environment variable AUTONAT_REGEN_GOLDEN is not a setting; ignored",
        "environment variable AUTONAT_TARGET_PEER is not a setting; ignored "
        "(did you mean AUTONAT_TARGET_PEERS?)",
    ]


def test_the_cli_collects_stray_variable_warnings(tmp_path: Path) -> None:
    loaded = load_node_config(_args("node"), profile="default",
                              environ=_environ(tmp_path, AUTONAT_TARGET_PEER="3"))
    assert loaded.config.dialer.target_peers == NodeConfig().dialer.target_peers
    assert len(loaded.warnings) == 1 and "AUTONAT_TARGET_PEERS?" in loaded.warnings[0]


# --- every configuration error names its source ----------------------------------------


@pytest.mark.parametrize(("layers", "sources", "message"), [
    (({"target_peers": 0},), ("config file /x/y.toml",),
     "invalid setting target_peers=0 from config file /x/y.toml: target_peers must be > 0"),
    (({"target_peers": 0},), ({"target_peers": "environment variable AUTONAT_TARGET_PEERS"},),
     "invalid setting target_peers=0 from environment variable AUTONAT_TARGET_PEERS: "),
    (({"listen": ["garbage"]},), ({"listen": "flag --listen"},),
     "invalid setting listen=['garbage'] from flag --listen: "),
    (({"target_peers": 30}, {"max_connections": 20}), ("profile p", "config file c"),
     "invalid setting target_peers=30 from profile p, max_connections=20 from config file c: "
     "target_peers must be <= max_connections"),
    (({"public_networks": ["300.0.0.0/8"]},), ("config file c",),
     "invalid setting public_networks=['300.0.0.0/8'] from config file c: "),
    (({"target_peers": "3"},), ("flag --x",), "flag --x: target_peers: expected an integer"),
    (({"target": 3},), ("config file c",), "config file c: unknown setting 'target'"),
])
def test_build_errors_name_the_source(layers: tuple[dict[str, object], ...],
                                      sources: tuple[object, ...], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_node_config(*layers, sources=sources)  # type: ignore[arg-type]
    assert str(info.value).startswith(message), str(info.value)


def test_a_later_layer_takes_over_the_source() -> None:
    with pytest.raises(ConfigError) as info:
        build_node_config({"target_peers": 0}, {"target_peers": 0},
                          sources=("config file c", "flag --x"))
    assert "target_peers=0 from flag --x:" in str(info.value)
    assert "config file" not in str(info.value)


@pytest.mark.parametrize(("argv", "environ", "toml", "source"), [
    (("node", "--http", "nonsense"), {}, None, "from flag --http"),
    (("node",), {"AUTONAT_TARGET_PEERS": "0"}, None,
     "from environment variable AUTONAT_TARGET_PEERS"),
    (("node", "--config", "{file}"), {}, "target_peers = 0\n", "from config file {file}"),
    (("node",), {"AUTONAT_CONFIG": "{file}"}, "[dialer]\ntarget_peers = 0\n",
     "from config file {file}"),
], ids=["flag", "environment", "config-flag", "config-variable"])
def test_cli_errors_name_flag_variable_or_file(tmp_path: Path, argv: tuple[str, ...],
                                               environ: dict[str, str], toml: str | None,
                                               source: str) -> None:
    file = tmp_path / "c.toml"
    if toml is not None:
        file.write_text(toml)
    argv = tuple(arg.format(file=file) for arg in argv)
    environ = {key: value.format(file=file) for key, value in environ.items()}
    with pytest.raises(ConfigError) as info:
        node_config(_args(*argv), profile="default", environ=_environ(tmp_path, **environ))
    assert source.format(file=file) in str(info.value)


# --- profiles: packaged, overlaid by --config -------------------------------------------


def test_config_file_overlays_the_profile(tmp_path: Path) -> None:
    file = tmp_path / "mine.toml"
    file.write_text("[dialer]\ntarget_peers = 3\n")
    loaded = load_node_config(_args("boot", "--config", str(file)), profile="boot",
                              environ=_environ(tmp_path))
    config = loaded.config
    assert config.dialer.target_peers == 3  # from the file
    assert config.autonat_client.welcome_probes is True  # from the profile
    assert config.dialer.max_connections == 512  # from the profile
    assert loaded.config_file == file and loaded.profile == "boot"
    assert loaded.profile_file is not None and loaded.profile_file.endswith("boot.toml")
    assert "target_peers" in loaded.explicit and "welcome_probes" not in loaded.explicit
    # the same through $AUTONAT_CONFIG; environment and flags still win over the file
    via_env = node_config(_args("boot", "--listen", "/ip4/127.0.0.1/tcp/0/ws"), profile="boot",
                          environ=_environ(tmp_path, AUTONAT_CONFIG=str(file),
                                           AUTONAT_MAX_CONNECTIONS="40"))
    assert (via_env.dialer.target_peers, via_env.dialer.max_connections) == (3, 40)
    assert via_env.autonat_client.welcome_probes is True
    assert via_env.listen == ("/ip4/127.0.0.1/tcp/0/ws",)


def test_profiles_are_the_config_folder_files() -> None:
    for name in ("default", "boot"):
        text, where = profile_text(name)
        assert text == (ROOT / "config" / f"{name}.toml").read_text()
        assert Path(where).name == f"{name}.toml"


def test_profiles_are_read_as_package_resources(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed wheel has no config/ folder: the profile comes from the package."""
    package = tmp_path / "site" / "fake_profiles"
    package.mkdir(parents=True)
    (package / "boot.toml").write_text("welcome_probes = true\ntarget_peers = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(_cli_settings, "PROFILE_PACKAGE", "fake_profiles")
    monkeypatch.setattr(_cli_settings, "SOURCE_CONFIG_DIR", tmp_path / "no-checkout")
    text, where = profile_text("boot")
    assert "target_peers = 2" in text and Path(where) == package / "boot.toml"
    config = node_config(_args("boot"), profile="boot", environ=_environ(tmp_path))
    assert config.dialer.target_peers == 2 and config.autonat_client.welcome_probes is True
    # a profile missing from the package is an error, never a silent default
    with pytest.raises(ConfigError, match=r"profile default\.toml is missing from package"):
        node_config(_args("node"), profile="default", environ=_environ(tmp_path))


def test_the_wheel_maps_config_into_the_package() -> None:
    """pyproject ships config/*.toml as actors._profiles (no copy of the files)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert _cli_settings.PROFILE_PACKAGE in setuptools["packages"]
    assert setuptools["package-dir"][_cli_settings.PROFILE_PACKAGE] == "config"
    assert setuptools["package-data"][_cli_settings.PROFILE_PACKAGE] == [
        "*.toml", "scenarios/*.toml"]  # `autonat sim`'s shipped scenarios too
    assert not (ROOT / "actors" / "_profiles").exists()
    assert {p.name for p in (ROOT / "config").glob("*.toml")} >= {"default.toml", "boot.toml"}
    assert load_config_file(ROOT / "config" / "boot.toml")["welcome_probes"] is True


def test_the_wheel_lists_every_package_of_the_source_tree() -> None:
    """An installed (not editable) copy has exactly the listed packages: one missing
    from the list imports fine from a checkout and fails once installed."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for top in ("actors", "protocols") for init in (ROOT / top).rglob("__init__.py")}
    assert found <= set(setuptools["packages"]), sorted(found - set(setuptools["packages"]))


# --- an explicit key file must exist ---------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "environment", "config"])
def test_an_explicit_missing_key_file_is_an_error(tmp_path: Path, how: str) -> None:
    key = tmp_path / "typo.ser"
    argv = ["node"]
    environ = _environ(tmp_path)
    if how == "flag":
        argv += ["--key", str(key)]
    elif how == "environment":
        environ["AUTONAT_KEY_FILE"] = str(key)
    else:
        (tmp_path / "c.toml").write_text(f"key_file = '{key}'\n")
        argv += ["--config", str(tmp_path / "c.toml")]
    with pytest.raises(ConfigError) as info:
        node_config(_args(*argv), profile="default", environ=environ)
    message = str(info.value)
    assert str(key) in message and f"autonat id --key {key}" in message
    assert {"flag": "flag --key", "environment": "AUTONAT_KEY_FILE",
            "config": "config file"}[how] in message
    assert not key.exists()


def test_the_default_key_file_may_be_missing(tmp_path: Path) -> None:
    config = node_config(_args("node", "--data-dir", str(tmp_path / "d")), profile="default",
                         environ=_environ(tmp_path))
    assert config.key_file == tmp_path / "d" / "p2p_keypair.ser"  # created when the node starts


# --- bind checks: the hint matches the errno ---------------------------------------------


def test_an_address_this_machine_lacks_is_not_called_busy() -> None:
    config = NodeConfig(listen=(f"/ip4/{NOT_HERE}/tcp/44000/ws",),
                        http=HttpConfig(http_listen=f"{NOT_HERE}:0"))
    unchanged, notes = free_default_ports(config, frozenset())
    assert unchanged == config and notes == []  # not EADDRINUSE: no "default port busy"
    listen, http = bind_problems(config)
    assert listen == (f"cannot listen on /ip4/{NOT_HERE}/tcp/44000/ws: Cannot assign requested "
                      f"address (is {NOT_HERE} an address of this machine?)")
    assert http.startswith(f"cannot listen on {NOT_HERE}:0 (HTTP API): ")
    assert "another node" not in listen + http


def test_a_busy_port_says_so() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.91.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        [problem] = bind_problems(NodeConfig.from_settings(
            listen=(f"/ip4/127.0.91.1/tcp/{port}/ws",), http_listen=""))
    assert problem.endswith("(is another node running? choose another port)"), problem


@pytest.mark.parametrize(("code", "port", "hint"), [
    (errno.EADDRINUSE, 7888, "another node"),
    (errno.EADDRNOTAVAIL, 7888, "an address of this machine"),
    (errno.EACCES, 80, "port 80 is privileged"),
    (errno.EAFNOSUPPORT, 7888, "IPv6"),
    (errno.EIO, 7888, ""),
])
def test_bind_hints_follow_the_errno(code: int, port: int, hint: str) -> None:
    text = bind_hint(OSError(code, "x"), "10.0.0.1", port)
    assert hint in text and (text == "") == (hint == "")


def test_ipv6_hosts_are_bracketed() -> None:
    assert host_port("::1", 44855) == "[::1]:44855"
    assert host_port("127.0.0.1", 7888) == "127.0.0.1:7888"


# --- Ctrl-C -------------------------------------------------------------------------------


def test_keyboard_interrupt_is_found_inside_exception_groups() -> None:
    assert is_interrupt(KeyboardInterrupt())
    nested = BaseExceptionGroup("outer", [ValueError(), BaseExceptionGroup(
        "inner", [KeyboardInterrupt()])])
    assert is_interrupt(nested)
    assert not is_interrupt(ExceptionGroup("g", [ValueError()]))
    assert not is_interrupt(ValueError())


def test_main_turns_a_wrapped_interrupt_into_one_line_and_130(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise BaseExceptionGroup("trio", [KeyboardInterrupt()])

    monkeypatch.setattr("actors.surfaces._cli.cmd_id", interrupted)
    assert main(["id"]) == EXIT_INTERRUPTED == 130
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "autonat: interrupted\n"
