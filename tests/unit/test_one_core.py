"""The operator and the simulator run the same core functions, and those are what decide.

For each duty, the controller's tick (and the simulator's, where it simulates that
duty) is run with the core function wrapped by a spy: each must call it, and the
function it calls must be the core's own object, not a copy kept elsewhere.
"""

import asyncio
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from tests.unit.test_cost_allocations import CONFIG as COST_CONFIG
from tests.unit.test_cost_allocations import T0, Cluster, run
from tests.unit.test_inference_controller import DEP, NOW, Recorder, controller, spec
from tests.unit.test_training_controller import NOW as TRAINING_NOW
from tests.unit.test_training_controller import Harness
from tests.unit.test_training_controller import spec as training_spec

from gpufinops.controllers import cost as cost_controller
from gpufinops.controllers import inference as inference_controller
from gpufinops.controllers import training as training_controller
from gpufinops.core.cost import accounting, interval
from gpufinops.core.placement import choose, fallback, lifecycle
from gpufinops.core.scaling import tick as scaling_tick
from gpufinops.core.scaling.observation import Observation
from gpufinops.sim import policies
from gpufinops.sim import training as training_sim
from gpufinops.sim.service import View


def spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, core: Any) -> list[Any]:
    """Wrap ``module.name`` (which must be the core's ``core`` object) and record calls."""
    assert getattr(module, name) is core, f"{module.__name__}.{name} is not the core's"
    calls: list[Any] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return core(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def test_scaling_operator_and_simulator_plan_each_tick_with_the_same_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = scaling_tick.plan_inference
    by_operator = spy(monkeypatch, inference_controller, "plan_inference", core)
    by_simulator = spy(monkeypatch, policies, "plan_inference", core)
    rec = Recorder()
    c = controller(Observation(queue_depth=0, arrival_rate=55), rec)
    asyncio.run(c.tick(spec(), 1, DEP, [], NOW))
    assert len(by_operator) == 1 and rec.scaled == [6]
    # Demand as read (a demandQuery's arrivals here; the engine presets' completions by
    # default in the simulator) reaches the same function unchanged.
    policy = policies.CorePolicy("reactive", spec().inference, signal="arrivals")  # type: ignore[arg-type]
    view = View(NOW, 0, 2, 2, 0.0, 2.0, 55.0, 20.0, 0.5)
    assert policy.decide(view) >= 1
    assert len(by_simulator) == 1
    assert by_simulator[0][0].observation.arrival_rate == 55.0


def test_placement_operator_plans_with_the_core_lifecycle_and_the_simulator_shares_its_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planned = spy(monkeypatch, training_controller, "plan_training", lifecycle.plan_training)
    h = Harness()
    c = h.controller()
    c.tick(training_spec(), h.world(TRAINING_NOW))
    c.tick(training_spec(), h.world(TRAINING_NOW + 1))
    assert len(planned) == 2 and h.status["placement"]["phase"] == "Running"
    # The simulator replays the same pool choice and fallback rules the lifecycle calls.
    assert training_sim.choose_pool is lifecycle.choose_pool is choose.choose_pool
    assert training_sim.fallback_verdict is lifecycle.fallback_verdict
    assert lifecycle.fallback_verdict is fallback.fallback_verdict


def test_the_cost_pass_prices_and_accrues_with_the_core_ledger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planned = spy(monkeypatch, cost_controller, "plan_interval", interval.plan_interval)
    charged = spy(monkeypatch, interval, "charge", accounting.charge)
    accounted = spy(monkeypatch, interval, "account", accounting.account)
    rates = spy(monkeypatch, cost_controller, "hourly_rates", accounting.hourly_rates)
    cluster = Cluster()
    accountant = cost_controller.CostAccountant(COST_CONFIG, cluster.effects())
    for minutes in (30, 45):
        run(accountant, cluster, T0 + timedelta(minutes=minutes))
    assert len(planned) == 2 and len(charged) == 2 and len(accounted) == 2
    assert len(rates) == 1  # unallocated GPUs: from the second pass, over the interval
    assert cluster.status["cost"]["totalUSD"] == 3.0


def test_deadlines_operator_and_simulator_ask_the_same_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.unit.test_training_controller import deadline_spec

    from gpufinops.core.placement import deadline
    from gpufinops.sim import spot

    by_operator = spy(monkeypatch, lifecycle, "capacity_now", deadline.capacity_now)
    by_simulator = spy(monkeypatch, spot, "capacity_now", deadline.capacity_now)
    h = Harness()
    c = h.controller()
    c.tick(deadline_spec(12), h.world(TRAINING_NOW))
    c.tick(deadline_spec(12), h.world(TRAINING_NOW + 15))
    assert by_operator, "the operator placed a job with a deadline without the rule"
    job = spot.Job("j", 1.0, 0.0, 3600.0, 3600.0, 7200.0)
    zone = spot.SpotTrace("z", "v100_1", 1, 600.0, np.ones(50, dtype=np.int64))
    options = spot.Options(step_seconds=600.0)
    spot.replay(job, [zone], spot.gpufinops_policy, options, (1.0, 3.0))
    assert by_simulator, "the simulated gpufinops policy did not ask the rule"
