"""The config file: loaded and checked once at start-up into a ``Settings`` object."""

from modelgate.config.loader import ConfigError, load_settings, parse_settings
from modelgate.config.settings import DeploymentSettings, ProviderSettings, Settings, TargetSettings

__all__ = [
    "ConfigError",
    "DeploymentSettings",
    "ProviderSettings",
    "Settings",
    "TargetSettings",
    "load_settings",
    "parse_settings",
]
