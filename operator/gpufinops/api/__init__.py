"""The AIWorkload API (group ``gpufinops.dev``, version ``v1alpha1``).

These pydantic models are the single source of truth: the CRD in ``crds/`` is
generated from them (``gpufinops crd``), and the operator re-validates every
object with them, so the API server and the operator agree on what is valid.
"""

from gpufinops.api.resource import GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION, AIWorkload
from gpufinops.api.spec import AIWorkloadSpec, Mode, WorkloadType
from gpufinops.api.status import AIWorkloadStatus, Condition, ConditionStatus

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "SINGULAR",
    "VERSION",
    "AIWorkload",
    "AIWorkloadSpec",
    "AIWorkloadStatus",
    "Condition",
    "ConditionStatus",
    "Mode",
    "WorkloadType",
]
