"""The operator's own configuration (cluster-wide, set by the platform team)."""

from gpufinops.config.model import (
    CapacityType,
    ConfigError,
    IdleShutdownDefaults,
    NodePool,
    OperatorConfig,
    load_config,
    parse_config,
)
from gpufinops.config.pricing import InstancePrice, PricingTable, default_pricing

__all__ = [
    "CapacityType",
    "ConfigError",
    "IdleShutdownDefaults",
    "InstancePrice",
    "NodePool",
    "OperatorConfig",
    "PricingTable",
    "default_pricing",
    "load_config",
    "parse_config",
]
