"""Configuration: :class:`NodeConfig` and the TOML file / environment / flag layers.

May import: :mod:`protocols.node` and the layers below it (not its sibling
:mod:`protocols.bootstrap`).
"""

from __future__ import annotations

from ._config_file import (
    CONFIG_SECTIONS,
    ENV_ALLOWLIST,
    ENV_PREFIX,
    POLICY_KEYS,
    LayerSource,
    Settings,
    SettingValue,
    build_node_config,
    env_settings,
    env_source,
    env_warnings,
    load_config_text,
    setting_keys,
)
from ._node_config import DEFAULT_LISTEN, LOG_FORMATS, LOG_LEVELS, NodeConfig, parse_host_port

__all__ = [
    "CONFIG_SECTIONS",
    "DEFAULT_LISTEN",
    "ENV_ALLOWLIST",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "POLICY_KEYS",
    "LayerSource",
    "NodeConfig",
    "SettingValue",
    "Settings",
    "build_node_config",
    "env_settings",
    "env_source",
    "env_warnings",
    "load_config_text",
    "parse_host_port",
    "setting_keys",
]
