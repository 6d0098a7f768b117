"""Node settings from a TOML file, ``AUTONAT_*`` environment variables and flags.

Theory of operation
-------------------
Configuration comes in *layers*, each a flat mapping ``{key: value}`` whose
keys are the setting names of :class:`NodeConfig` plus the four address-policy keys
(``allow_loopback``, ``allow_private``, ``public_networks``, ``allow_dns``):

* :func:`load_config_text` - a TOML document (``actors.load_config_file``
  reads it from a file). Keys may sit at the top level
  or in the tables listed in :data:`CONFIG_SECTIONS` (``[node]``, ``[policy]``,
  ``[dialer]``, ``[autonat]``, ``[stun]``, ``[bootstrap]``, ``[http]``, ``[log]``,
  ``[relay]``). The
  tables exist only for readability: ``[dialer] target_peers = 8`` and a
  top-level ``target_peers = 8`` mean the same, and setting a key twice is an
  error. ``config/default.toml`` documents every key.
* :func:`env_settings` - ``AUTONAT_<KEY>`` variables, e.g.
  ``AUTONAT_TARGET_PEERS=12``; lists are comma separated, booleans are
  ``true/false/1/0/yes/no/on/off``. Variables in :data:`ENV_ALLOWLIST` belong
  to the CLI and are ignored here. A variable that names no setting (a typo,
  or another program's ``AUTONAT_*``) is skipped: :func:`env_warnings` gives
  one warning line per such variable, with a "did you mean" suggestion.
* flags - the CLI builds a mapping of the same shape.

:func:`build_node_config` merges the layers, later ones winning key by key
(file < environment < flags; a list given later replaces the earlier list),
turns the policy keys into one :class:`AddressPolicy` and constructs the
:class:`NodeConfig`. Its ``sources`` argument names each layer (``config file
/etc/autonat.toml``) or each key of a layer (``environment variable
AUTONAT_TARGET_PEERS``, ``flag --listen``); it tracks which layer set each key
last, so a value ``NodeConfig`` rejects is reported with where it came from.

The keys are flat although :class:`NodeConfig` is not: it composes one
component per part of the node (``dialer``, ``connection``, ``autonat_client``,
``autonat_server_config``, ``bootstrap``, ``http``, ``logging``, ``stun``,
``udp``), and
:func:`~protocols.config._node_config.setting_fields` says, by reflecting on
the dataclasses, which component owns each key (a key names exactly one
field; a field with metadata ``setting=False`` is for code only).
:meth:`NodeConfig.from_settings` routes the merged keys to their components.
The TOML tables therefore need not match the components.

Values are checked against the *annotation* of the field they set (read with
``typing.get_type_hints`` on the owning dataclass), so a field added to
``NodeConfig`` or one of its components later is configurable without
touching this module as long as its type is one of
``bool``, ``int``, ``float``, ``str``, ``Path``, ``tuple[str, ...]``, a
``Literal`` of strings, or one of those ``| None``. A ``None`` (optional)
field is unset with ``""``, since TOML has no null. Every problem - TOML
syntax, an unknown table or key, a wrong type, a value ``NodeConfig``
rejects - raises :class:`ConfigError` with a message that names the source
and the key.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from ..core import AddressPolicy, ConfigError, ProtocolError
from ._node_config import NodeConfig, setting_fields

__all__ = [
    "CONFIG_SECTIONS",
    "ENV_ALLOWLIST",
    "ENV_PREFIX",
    "POLICY_KEYS",
    "LayerSource",
    "SettingValue",
    "Settings",
    "build_node_config",
    "env_settings",
    "env_source",
    "env_warnings",
    "load_config_text",
    "setting_keys",
]

SettingValue = bool | int | float | str | Path | tuple[str, ...] | None
Settings = dict[str, SettingValue]
LayerSource = str | Mapping[str, str]
"""Where a layer came from: one name for all its keys, or a name per key."""

CONFIG_SECTIONS: Final = ("node", "policy", "dialer", "autonat", "stun", "bootstrap", "http",
                          "log", "relay")
ENV_PREFIX: Final = "AUTONAT_"
ENV_ALLOWLIST: Final = frozenset({"AUTONAT_CONFIG"})
"""Variables read by the CLI itself (which config file to load), not settings."""
POLICY_KEYS: Final[Mapping[str, object]] = types.MappingProxyType({
    "allow_loopback": bool,
    "allow_private": bool,
    "public_networks": tuple[str, ...],
    "allow_dns": bool,
})
_NOT_SETTABLE: Final = frozenset({"policy"})  # built from POLICY_KEYS
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
_CLIP: Final = 60


class _BadValue(Exception):
    """A value does not match the annotation; ``args[0]`` says what was expected."""


def setting_keys() -> dict[str, object]:
    """Every configurable key and its type annotation (the fields of ``NodeConfig`` and
    of its components, in declaration order, then the policy keys)."""
    keys: dict[str, object] = {}
    for name, where in setting_fields().items():
        if name in _NOT_SETTABLE or not where.field.metadata.get("setting", True):
            continue
        keys[name] = _hints(where.owner)[name]
    keys.update(POLICY_KEYS)
    return keys


@functools.cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


# --- the three layers --------------------------------------------------------------


def load_config_text(toml_text: str, *, source: str) -> Settings:
    """Settings from TOML text; ``source`` (e.g. the file name) prefixes every error."""
    try:
        document = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid as a config file: arrays or tables nested "
                          "too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise ConfigError(f"{source}: {_where_too_long(toml_text)}: {exc}".split(";")[0]
                          ) from None
    keys = setting_keys()
    settings: Settings = {}
    where: dict[str, str] = {}
    for name, value in document.items():
        if isinstance(value, dict):
            _load_section(name, value, keys, source, settings, where)
        else:
            _load_key(name, value, "top level", keys, source, settings, where)
    return settings


def _where_too_long(text: str) -> str:
    """Where a number too long to convert sits (tomllib's error does not say)."""
    match = re.search(r"[0-9_]{1000,}", text)
    if match is None:
        return "a value cannot be converted"
    line = text.count("\n", 0, match.start()) + 1
    key = text[text.rfind("\n", 0, match.start()) + 1:match.start()].split("=")[0].strip()
    return f"line {line}{f' (key {key})' if key else ''}: a number far too long"


def env_source(key: str) -> str:
    """How an error names the environment variable of setting ``key``."""
    return f"environment variable {ENV_PREFIX}{key.upper()}"


def env_settings(environ: Mapping[str, str]) -> Settings:
    """Settings from ``AUTONAT_<KEY>`` variables; a bad value is a :class:`ConfigError`.

    A variable that names no setting is skipped (see :func:`env_warnings`).
    """
    keys = setting_keys()
    settings: Settings = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_ALLOWLIST:
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in keys:
            continue
        try:
            settings[key] = _convert(_from_text(environ[name], keys[key]), keys[key])
        except _BadValue as exc:
            raise ConfigError(f"environment variable {name}: expected {exc}, "
                              f"got {_show(environ[name])}") from None
    return settings


def env_warnings(environ: Mapping[str, str]) -> list[str]:
    """One line per ``AUTONAT_*`` variable that names no setting (it is ignored)."""
    keys = setting_keys()
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_ALLOWLIST:
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in keys:
            warnings.append(f"environment variable {name} is not a setting; ignored"
                            f"{_suggest(key, keys, prefix=ENV_PREFIX)}")
    return warnings


def build_node_config(*layers: Mapping[str, object],
                      sources: Sequence[LayerSource] = ()) -> NodeConfig:
    """Merge layers (later wins) into a validated :class:`NodeConfig`.

    Every layer's values are checked and converted like a file's (a flag layer
    may hold lists where a tuple is meant, strings where a path is meant).
    ``sources[i]`` names layer ``i`` (a string for the whole layer or a mapping
    key -> name); every error then says where the offending value came from.
    """
    keys = setting_keys()
    merged: Settings = {}
    origin: dict[str, str] = {}
    for index, layer in enumerate(layers):
        for key, value in layer.items():
            source = _layer_source(sources, index, key)
            where = f"{source}: " if source else ""
            if key not in keys:
                raise ConfigError(f"{where}unknown setting {key!r}{_suggest(key, keys)}")
            try:
                merged[key] = _convert(value, keys[key])
            except _BadValue as exc:
                raise ConfigError(f"{where}{key}: expected {exc}, got {_show(value)}") from None
            if source:
                origin[key] = source
            else:
                origin.pop(key, None)
    policy_args = {key: merged.pop(key) for key in POLICY_KEYS if key in merged}
    try:
        policy = AddressPolicy.from_strings(**policy_args)  # type: ignore[arg-type]
    except ProtocolError as exc:
        raise ConfigError(_invalid(str(exc), policy_args, origin, POLICY_KEYS)) from None
    try:
        return NodeConfig.from_settings(**merged, policy=policy)
    except (ValueError, TypeError, ProtocolError) as exc:
        raise ConfigError(_invalid(str(exc), merged, origin, keys)) from None


def _layer_source(sources: Sequence[LayerSource], index: int, key: str) -> str | None:
    if index >= len(sources):
        return None
    source = sources[index]
    return source if isinstance(source, str) else source.get(key)


def _invalid(message: str, values: Mapping[str, object], origin: Mapping[str, str],
             keys: Iterable[str]) -> str:
    """``invalid setting KEY=VALUE from SOURCE: message`` for a value NodeConfig rejects.

    The culprit is the key the message names first (else found by trial);
    other keys the message names are listed with their sources too, when
    they did not keep their defaults.
    """
    named = _named_keys(message, keys)
    culprit = named[0] if named else _culprit_by_trial(values)
    if culprit is None:
        return f"invalid setting: {message}"
    parts = []
    for key in [culprit, *(k for k in named if k != culprit)]:
        if key == culprit or key in origin:
            value = _show(list(v) if isinstance(v := values.get(key), tuple) else v)
            where = f" from {origin[key]}" if key in origin else (
                "" if key in values else " (default)")
            parts.append(f"{key}={value}{where}")
    return f"invalid setting {', '.join(parts)}: {message}"


# --- TOML helpers ------------------------------------------------------------------


def _load_section(name: str, table: dict[str, object], keys: Mapping[str, object], source: str,
                  settings: Settings, where: dict[str, str]) -> None:
    if name not in CONFIG_SECTIONS:
        tables = ", ".join(f"[{section}]" for section in CONFIG_SECTIONS)
        raise ConfigError(f"{source}: unknown table [{name}]; tables are {tables}"
                          f"{_suggest(name, CONFIG_SECTIONS)}")
    for key, value in table.items():
        if isinstance(value, dict):
            raise ConfigError(f"{source}: [{name}] {key}: nested tables are not allowed")
        _load_key(key, value, f"[{name}]", keys, source, settings, where)


def _load_key(key: str, value: object, place: str, keys: Mapping[str, object], source: str,
              settings: Settings, where: dict[str, str]) -> None:
    if key not in keys:
        raise ConfigError(f"{source}: unknown key {key!r} in {place}{_suggest(key, keys)}")
    if key in where:
        raise ConfigError(f"{source}: key {key!r} is set twice ({where[key]} and {place})")
    try:
        settings[key] = _convert(value, keys[key])
    except _BadValue as exc:
        raise ConfigError(f"{source}: {key}: expected {exc}, got {_show(value)}") from None
    where[key] = place


# --- conversion by annotation --------------------------------------------------------


def _convert(value: object, hint: object) -> SettingValue:
    """``value`` as the Python type ``hint`` names, or :class:`_BadValue`."""
    inner = _optional_inner(hint)
    if inner is not None:
        return None if value is None or value == "" else _convert(value, inner)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _BadValue("true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _BadValue("an integer")
    if hint is float:
        return _to_float(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _BadValue("a string")
    if hint is Path:
        return _to_path(value)
    if typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, Ellipsis):
        return _to_strings(value)
    if typing.get_origin(hint) is typing.Literal:
        return _to_choice(value, typing.get_args(hint))
    raise _BadValue(f"nothing: this setting (type {hint}) cannot be set from configuration")


def _from_text(text: str, hint: object) -> object:
    """Turn an environment string into the raw value :func:`_convert` expects."""
    inner = _optional_inner(hint)
    if inner is not None:
        return None if text.strip().lower() in ("", "none") else _from_text(text, inner)
    stripped = text.strip()
    if hint is bool:
        lowered = stripped.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise _BadValue("true or false (also 1/0, yes/no, on/off)")
    if hint is int:
        try:
            return int(stripped)
        except ValueError:
            raise _BadValue("an integer") from None
    if hint is float:
        try:
            return float(stripped)
        except ValueError:
            raise _BadValue("a number") from None
    if typing.get_origin(hint) is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


def _optional_inner(hint: object) -> object | None:
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return None
    args: list[object] = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if len(args) != 1 or len(typing.get_args(hint)) != 2:
        return None
    return args[0]


def _to_float(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and not math.isnan(value):
        return float(value)
    raise _BadValue("a number")


def _to_path(value: object) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str) and value:
        return Path(value).expanduser()
    raise _BadValue("a path (string)")


def _to_strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise _BadValue("a list of strings")


def _to_choice(value: object, choices: tuple[object, ...]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    raise _BadValue("one of " + ", ".join(repr(choice) for choice in choices))


# --- error helpers -----------------------------------------------------------------


def _named_keys(message: str, keys: Iterable[str]) -> list[str]:
    """The setting keys a message names, in the order it names them."""
    named = [(found.start(), key) for key in keys
             if (found := re.search(rf"\b{re.escape(key)}\b", message))]
    return [key for _, key in sorted(named)]


def _culprit_by_trial(merged: Mapping[str, object]) -> str | None:
    """The key whose value alone makes NodeConfig fail (messages that name no key)."""
    fields_ = setting_fields()
    for key, value in merged.items():
        if key not in fields_:
            continue
        try:
            NodeConfig.from_settings(**{key: value})
        except (ValueError, TypeError, ProtocolError):
            return key
    return None


def _suggest(word: str, options: Iterable[str], *, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    if not close:
        return ""
    name = f"{prefix}{close[0].upper()}" if prefix else repr(close[0])
    return f" (did you mean {name}?)"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _CLIP else text[:_CLIP] + "..."
