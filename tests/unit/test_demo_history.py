"""The demo's backfilled past load: the same compressed day as the live replay, at its
phase, a counter that only grows, on a pod name the presets select for the Deployment,
and days that differ from each other (seasonal naive is no perfect forecast)."""

import re
from itertools import pairwise

import numpy as np

from gpufinops.adapters.prometheus.presets import pods_regex
from gpufinops.demo.history import STEP_SECONDS, PastLoad, demand_history, history_pod
from gpufinops.demo.loadgen import DemoTarget
from gpufinops.demo.shape import synthetic_day

TARGET = DemoTarget("gpufinops-demo", "chat", "app=chat", "x.csv", 1, 16.0, 3.0, "llama")
NOW = 1_800_000_000.0


def _samples(text: str) -> list[tuple[float, float]]:
    return [(float(t), float(v)) for v, t in re.findall(r"\} ([0-9.]+) (\d+)$", text, re.M)]


def test_history_is_a_growing_counter_ending_before_now_on_a_pod_the_presets_select() -> None:
    shape = synthetic_day(600)
    text = demand_history([PastLoad(TARGET, shape)], now=NOW, days=2, start_hour=6.0)
    assert text.startswith("# TYPE vllm:request_success counter") and text.endswith("# EOF\n")
    assert re.fullmatch(pods_regex("Deployment", "chat"), history_pod("chat"))
    assert f'pod="{history_pod("chat")}"' in text and 'model_name="llama"' in text
    samples = _samples(text)
    times = [t for t, _ in samples]
    assert times == sorted(times) and max(times) < NOW
    assert max(times) - min(times) >= 2 * 86_400 - 2 * STEP_SECONDS
    values = [v for _, v in samples]
    assert all(b >= a for a, b in pairwise(values))


def test_the_past_follows_the_live_replays_phase_with_days_of_their_own() -> None:
    shape = synthetic_day(600)
    samples = _samples(demand_history([PastLoad(TARGET, shape)], now=NOW, days=1,
                                      start_hour=6.0))  # fmt: skip
    times = np.array([t for t, _ in samples])
    rates = np.diff([v for _, v in samples]) / STEP_SECONDS
    expected = np.array([TARGET.peak_rps * shape.at(t - NOW, 6.0) for t in times[1:]])
    ratio = rates / expected
    # Every rate is the replayed shape times a day level (0.8-1.2) and noise (0.95-1.05).
    assert ratio.min() >= 0.8 * 0.95 - 1e-9 and ratio.max() <= 1.2 * 1.05 + 1e-9
    # Compressed days differ in level: one day ago is not the same value again.
    days = np.floor((times[1:] - NOW) / 600)
    levels = [float(np.median(ratio[days == d])) for d in np.unique(days)[1:-1]]
    assert max(levels) - min(levels) > 0.1
