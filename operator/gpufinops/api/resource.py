"""The AIWorkload resource: its identity and envelope."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.api.status import AIWorkloadStatus

GROUP = "gpufinops.dev"
VERSION = "v1alpha1"
KIND = "AIWorkload"
PLURAL = "aiworkloads"
SINGULAR = "aiworkload"
SHORT_NAME = "aiw"
API_VERSION = f"{GROUP}/{VERSION}"
CRD_NAME = f"{PLURAL}.{GROUP}"


class AIWorkload(BaseModel):
    """An AI workload whose GPU capacity and spend the operator manages."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: AIWorkloadSpec
    status: AIWorkloadStatus | None = None
