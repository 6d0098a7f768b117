"""Configuration: :class:`NodeConfig`, its HTTP and logging components, and the
TOML file / environment / flag layers.

May import: every other sub-package of :mod:`protocols` (it is the top layer:
:class:`NodeConfig` composes the components declared in :mod:`protocols.bootstrap`,
:mod:`protocols.node`, :mod:`protocols.autonat` and :mod:`protocols.wire`).
"""

from __future__ import annotations

from ._announce import announce_address
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
from ._node_config import (
    DEFAULT_LISTEN,
    NodeConfig,
    SettingField,
    component_fields,
    setting_fields,
)
from ._surface_config import LOG_FORMATS, LOG_LEVELS, HttpConfig, LoggingConfig, parse_host_port

__all__ = [
    "CONFIG_SECTIONS",
    "DEFAULT_LISTEN",
    "ENV_ALLOWLIST",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "POLICY_KEYS",
    "HttpConfig",
    "LayerSource",
    "LoggingConfig",
    "NodeConfig",
    "SettingField",
    "SettingValue",
    "Settings",
    "announce_address",
    "build_node_config",
    "component_fields",
    "env_settings",
    "env_source",
    "env_warnings",
    "load_config_text",
    "parse_host_port",
    "setting_fields",
    "setting_keys",
]
