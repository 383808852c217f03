"""Configuration: the schema of ``bastion.yaml`` and its loader."""

from bastion.config.errors import ConfigError, ConfigIssue
from bastion.config.loader import LoadedConfig, ResolvedRoute, load_config
from bastion.config.model import GatewayConfig

__all__ = ["ConfigError", "ConfigIssue", "GatewayConfig", "LoadedConfig", "ResolvedRoute", "load_config"]
