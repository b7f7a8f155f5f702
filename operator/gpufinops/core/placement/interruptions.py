"""Recognising a node that is about to go away from the taints put on it.

Termination handlers and node autoscalers taint a node before it is reclaimed;
reading taints rather than cloud APIs keeps the operator cloud-neutral.
"""

from collections.abc import Iterable, Mapping
from types import MappingProxyType

INTERRUPTION_TAINTS: Mapping[str, str] = MappingProxyType(
    {
        "aws-node-termination-handler/spot-itn": "SpotInterruptionNotice",
        "aws-node-termination-handler/rebalance-recommendation": "RebalanceRecommendation",
        "karpenter.sh/disrupted": "KarpenterDisruption",
        "karpenter.sh/disruption": "KarpenterDisruption",
        "cloud.google.com/impending-node-termination": "ImpendingNodeTermination",
        "gpufinops.dev/spot-interruption": "SpotInterruption",
    }
)
"""Taint key → the reason reported for it."""


NOTICE_SECONDS: Mapping[str, float] = MappingProxyType(
    {"SpotInterruptionNotice": 120.0, "ImpendingNodeTermination": 30.0, "NodeGone": 0.0}
)
"""Reason → how long a node serves after its notice before its instance goes (AWS's
two minutes, GCP's 30 s; a node already gone, none). The other reasons (a rebalance
recommendation, a Karpenter disruption) set no deadline."""


def notice_seconds(reason: str) -> float | None:
    """The notice length of ``reason``, as reported (``"<Reason> (<taint key>)"`` or the
    bare reason); None when that notice sets no deadline."""
    return NOTICE_SECONDS.get(reason.split(" ", 1)[0])


def interruption_reason(taint_keys: Iterable[str]) -> str | None:
    """The reason of the first known interruption taint among ``taint_keys``, or None."""
    for key in taint_keys:
        reason = INTERRUPTION_TAINTS.get(key)
        if reason is not None:
            return reason
    return None
