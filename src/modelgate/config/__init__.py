"""The config file: loaded and checked once at start-up into a ``Settings`` object."""

from modelgate.config.loader import ConfigError, load_settings, parse_settings
from modelgate.config.settings import DeploymentSettings, Settings, TargetSettings
from modelgate.providers.settings import ProviderSettings

__all__ = [
    "ConfigError",
    "DeploymentSettings",
    "ProviderSettings",
    "Settings",
    "TargetSettings",
    "load_settings",
    "parse_settings",
]
