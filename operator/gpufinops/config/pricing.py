"""The editable default price table: data, never logic."""

from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field


class InstancePrice(BaseModel):
    """Price of one GPU instance type, USD per instance-hour."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    instance_type: str = Field(alias="instanceType")
    gpu_type: str = Field(alias="gpuType")
    gpus: int = Field(gt=0)
    on_demand: float = Field(alias="onDemand", ge=0)
    spot: float | None = Field(default=None, ge=0)


class PricingTable(BaseModel):
    """Prices by instance type."""

    model_config = ConfigDict(extra="forbid")

    instances: list[InstancePrice]

    def find(self, instance_type: str) -> InstancePrice | None:
        return next((i for i in self.instances if i.instance_type == instance_type), None)


def default_pricing() -> PricingTable:
    """The table shipped with the operator (``config/pricing.yaml``)."""
    text = resources.files("gpufinops.config").joinpath("pricing.yaml").read_text()
    return PricingTable.model_validate(yaml.safe_load(text))
