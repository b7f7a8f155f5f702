"""Past days of the demo's load, written into Prometheus before the demo starts.

The forecaster needs more than a season of demand history before it forecasts
(a day for the seasonal lag, plus training and a holdout), which a demo that has
just started does not have. So the days before "now" are written into the local
Prometheus (``promtool tsdb create-blocks-from openmetrics``) as each demo
Deployment's vLLM completion counter, following the same compressed trace day the
load generator replays live: 144 compressed days make a real day, so one season
ago is the same moment of the compressed day, as it will be live. Each compressed
day gets a level of its own (0.8x to 1.2x) and each sample some noise, so the past
is not a copy of itself: seasonal naive is then no perfect forecast and the model
has something to learn (the level of the last hours), as with real traffic.

The series belong to a pod name of the Deployment's shape that no live pod has,
so the live series continue them without overlapping.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from gpufinops.demo.loadgen import DemoTarget
from gpufinops.demo.shape import LoadShape

HISTORY_POD_HASH = "history"
HISTORY_POD_SUFFIX = "past0"
STEP_SECONDS = 30
"""Two samples per minute: the presets' ``rate(...[1m])`` needs two in each window."""


@dataclass(frozen=True)
class PastLoad:
    target: DemoTarget
    shape: LoadShape


def history_pod(deployment: str) -> str:
    """A pod name the Deployment's pod pattern matches and no live pod will have."""
    return f"{deployment}-{HISTORY_POD_HASH}-{HISTORY_POD_SUFFIX}"


def demand_history(
    loads: Sequence[PastLoad],
    *,
    now: float,
    days: float,
    start_hour: float,
    seed: int = 1,
) -> str:
    """OpenMetrics text of ``days`` of completions before ``now`` (epoch seconds).

    The live replay begins at ``now`` at ``start_hour`` of its compressed day, so a
    moment ``t`` before it is ``t - now`` seconds into the replay (negative), the
    same arithmetic the load generator uses going forward.
    """
    rng = random.Random(seed)
    end = int(now) // STEP_SECONDS * STEP_SECONDS - STEP_SECONDS
    start = end - int(days * 86_400) // STEP_SECONDS * STEP_SECONDS
    lines = ["# TYPE vllm:request_success counter"]
    for load in loads:
        target, shape = load.target, load.shape
        labels = (
            f'model_name="{target.model}",namespace="{target.namespace}",'
            f'pod="{history_pod(target.name)}"'
        )
        levels: dict[int, float] = {}
        total = 0.0
        for t in range(start, end + 1, STEP_SECONDS):
            elapsed = t - now
            day = int(elapsed // shape.day_seconds)
            level = levels.setdefault(day, rng.uniform(0.8, 1.2))
            rate = target.peak_rps * shape.at(elapsed, start_hour) * level * rng.uniform(0.95, 1.05)
            total += rate * STEP_SECONDS
            lines.append(f"vllm:request_success_total{{{labels}}} {total:.3f} {t}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
