"""Hostile AIWorkload specs: every one is rejected with a message naming the field, or
accepted and then handled by every controller without an exception.

The API server's schema is the first line of defence, but objects stored before a
CRD upgrade or with validation off reach the operator as they are, so the
operator's own checks and controllers must survive anything JSON can hold.
"""

import copy
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import example_workloads

from gpufinops.adapters.jobs import build_job, job_gpus, job_view
from gpufinops.api.spec import AIWorkloadSpec, WorkloadType
from gpufinops.api.status import Condition
from gpufinops.config import load_config
from gpufinops.core.cost.estimate import estimate
from gpufinops.core.cost.manifests import EstimateError, Manifest
from gpufinops.core.placement.lifecycle import profile
from gpufinops.core.placement.windows import next_window_start, window_open_now
from gpufinops.core.scaling.decide import ScalingSettings, ScalingState, Tick, decide
from gpufinops.core.scaling.observation import Observation
from gpufinops.core.spec_review import review_spec
from gpufinops.core.validation import SpecCheck, check_spec

CONFIG = load_config(None)
NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # a DST change in Europe
CONDITION_MESSAGE_MAX = 32768  # what the status schema (and Kubernetes) allow

EXAMPLES = [doc for _, doc in example_workloads()]
FAST = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------- strategies


def _keys(tree: Any, out: set[str]) -> set[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.add(key)
            _keys(value, out)
    elif isinstance(tree, list):
        for value in tree:
            _keys(value, out)
    return out


KNOWN_KEYS = sorted(_keys([d["spec"] for d in EXAMPLES], set()) | {"replicas", "jobRef"})

HUGE = "x" * 100_000
NASTY_STRINGS = [
    "",
    " ",
    HUGE,
    "\x00",
    "\u202e\u0000\ufeff",
    "🚀" * 200,
    'a"}b',
    "=~",
    "\\",
    "line\nbreak\r\n",
    "1e999",
    "NaN",
    "-0",
    "four",
    "Europe/Paris",
    "../../etc/passwd",
    "0 0 31 2 *",
    "a b c d e",
    "2030-02-30T00:00:00Z",
]
NASTY_NUMBERS = [-1, 0, 1, 2**31, 2**63, 10**30, -(10**30), 0.5, 1e308, -1e-308]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(NASTY_NUMBERS),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=12))
json_trees = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=5),
    max_leaves=25,
)
hostile_values = st.one_of(
    scalars,
    st.lists(st.none(), min_size=1, max_size=3),
    st.dictionaries(keys, st.none(), min_size=1, max_size=3),
    json_trees,
)

Path = tuple[str | int, ...]


def _paths(tree: Any, prefix: Path = ()) -> list[Path]:
    out = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out += _paths(value, (*prefix, i))
    return out


def _get(tree: Any, path: Path) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _dotted(path: Path) -> str:
    out = "spec"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@st.composite
def mutated_specs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid example spec with one hostile change, and the path of the change."""
    spec = copy.deepcopy(draw(st.sampled_from([d["spec"] for d in EXAMPLES])))
    paths = _paths(spec)
    path = draw(st.sampled_from(paths[1:]))
    parent, last = _get(spec, path[:-1]), path[-1]
    how = draw(st.sampled_from(["replace", "delete", "extra", "nulls", "wrap"]))
    if how == "replace":
        parent[last] = draw(hostile_values)
    elif how == "delete":
        del parent[last]
    elif how == "extra" and isinstance(parent, dict):
        key = draw(keys.filter(lambda k: k not in parent))
        parent[key] = draw(hostile_values)
        path = (*path[:-1], key)
    elif how == "nulls" and isinstance(parent[last], dict | list):
        value = parent[last]
        for k in value if isinstance(value, dict) else range(len(value)):
            value[k] = None
    else:  # a value nested one level too deep, or in a list where a scalar belongs
        parent[last] = [parent[last]] if draw(st.booleans()) else {"value": parent[last]}
    return spec, _dotted(path)


# ---------------------------------------------------------------- checks


def _related(problem: str, changed: str) -> bool:
    """The problem is at the changed field, inside it, or at a section containing it."""
    return problem == changed or changed.startswith(problem) or problem.startswith(changed)


def _drive_controllers(spec: AIWorkloadSpec) -> None:
    """What the operator does with an accepted spec, minus the cluster."""
    if spec.inference is not None:
        rules = ScalingSettings.from_spec(spec.inference)
        for observation in (Observation(), Observation(queue_depth=7.0, arrival_rate=3.0)):
            tick = Tick(now=NOW.timestamp(), current=1, ready=1, observation=observation)
            decision = decide(rules, ScalingState(), tick)
            assert 0 <= decision.desired <= spec.inference.max_replicas
    if spec.training is not None:
        windows = tuple(spec.training.start_windows or ())
        window_open_now(windows, NOW.timestamp())
        next_window_start(windows, NOW.timestamp())
        if spec.training.job_template is not None:
            body, _ = build_job("w", "default", "uid-1", spec.training.job_template)
            job = job_view(body)
            assert job.suspended
            made = profile(spec, job, created_at=NOW.timestamp())
            assert made.gpus == job_gpus(job) >= 0
    doc: dict[str, Any] = {"apiVersion": "gpufinops.dev/v1alpha1", "kind": "AIWorkload"}
    doc |= {"metadata": {"name": "w"}, "spec": spec.to_wire()}
    try:
        [estimated] = estimate([Manifest("w.yaml", doc)], CONFIG)
    except EstimateError as exc:
        assert exc.path and exc.message  # a clear refusal, naming the field
    else:
        assert estimated.expected_monthly_usd >= 0


def _outcome(raw: Any, changed: str | None = None) -> SpecCheck:
    check = check_spec(raw, CONFIG)
    before = [
        Condition(type="Ready", status="True", reason="Accepted", lastTransitionTime=NOW),
    ]
    verdict = review_spec(check, before, generation=3, now=NOW)
    assert all(len(c.message) <= CONDITION_MESSAGE_MAX for c in verdict.conditions)
    if check.valid:
        assert check.spec is not None and not check.problems
        assert verdict.event_type == "Normal"
        _drive_controllers(check.spec)
        return check
    assert check.spec is None and check.problems
    assert verdict.event_type == "Warning" and verdict.event_reason == "InvalidSpec"
    for problem in check.problems:
        assert problem.path.startswith("spec"), problem
        assert problem.message.strip(), problem
    assert check.problems[0].path in verdict.event_message
    if changed is not None:
        assert any(_related(p.path, changed) for p in check.problems), (changed, check.problems)
    return check


# ---------------------------------------------------------------- properties


@FAST
@given(raw=st.dictionaries(keys, json_trees, max_size=8))
def test_arbitrary_trees_are_rejected_or_handled(raw: dict[str, Any]) -> None:
    _outcome(raw)


@FAST
@given(raw=json_trees)
def test_a_spec_that_is_not_an_object_is_rejected_at_spec(raw: Any) -> None:
    check = _outcome(raw if raw is not None else {})
    if not isinstance(raw, dict):
        assert not check.valid


@settings(FAST, max_examples=400)
@given(case=mutated_specs())
def test_mutated_examples_name_the_changed_field(case: tuple[dict[str, Any], str]) -> None:
    spec, changed = case
    _outcome(spec, changed)


@FAST
@given(
    section=st.sampled_from(["inference", "training", "experiment"]),
    body=st.dictionaries(keys, json_trees, max_size=8),
)
def test_arbitrary_sections_under_a_valid_envelope(section: str, body: dict[str, Any]) -> None:
    kind = {"inference": "Inference", "training": "Training", "experiment": "Experiment"}
    raw = {"type": kind[section], "costAllocation": {"team": "t"}, section: body}
    _outcome(raw, f"spec.{section}")


@FAST
@given(template=json_trees)
def test_any_job_template_is_placed_or_refused(template: Any) -> None:
    raw = {
        "type": "Training",
        "costAllocation": {"team": "t"},
        "nodePools": ["l4-spot"],
        "training": {"jobTemplate": template},
    }
    _outcome(raw, "spec.training.jobTemplate")


# ---------------------------------------------------------------- found by the properties


def _inference(schedule: dict[str, Any]) -> dict[str, Any]:
    base = {"name": "peak", "cron": "0 8 * * 1-5", "timezone": "UTC", "durationSeconds": 60}
    return {
        "type": "Inference",
        "costAllocation": {"team": "t"},
        "inference": {
            "targetRef": {"name": "d"},
            "maxReplicas": 3,
            "schedules": [base | {"minReplicas": 1} | schedule],
        },
    }


def _problems(raw: Any) -> list[str]:
    return [str(p) for p in check_spec(raw, CONFIG).problems]


def test_an_unknown_time_zone_is_rejected_not_a_crash_at_every_tick() -> None:
    [problem] = _problems(_inference({"timezone": "Mars/Olympus_Mons"}))
    assert problem.startswith("spec.inference.schedules[0].timezone: unknown time zone")
    for name in ("", "../etc/passwd", "America", "UTC\x00"):
        assert _problems(_inference({"timezone": name}))


def test_a_cron_that_never_fires_or_does_not_parse_is_rejected() -> None:
    for cron in ("0 0 31 2 *", "a b c d e", "61 * * * *", "* * * * 8"):
        [problem] = _problems(_inference({"cron": cron}))
        assert problem.startswith("spec.inference.schedules[0].cron: invalid cron expression")
    window = {"cron": "0 0 30 2 *", "durationSeconds": 60, "timezone": "Nowhere"}
    training = {"jobRef": {"name": "j"}, "startWindows": [window]}
    problems = _problems(
        {"type": "Training", "costAllocation": {"team": "t"}, "training": training}
    )
    assert [p.split(":")[0] for p in problems] == [
        "spec.training.startWindows[0].cron",
        "spec.training.startWindows[0].timezone",
    ]


def test_a_huge_node_pool_name_does_not_overflow_the_condition_message() -> None:
    for pools in ([HUGE], [HUGE, HUGE]):
        raw = {
            "type": "Experiment",
            "costAllocation": {"team": "t"},
            "nodePools": pools,
            "experiment": {"targetRef": {"kind": "Job", "name": "j"}},
        }
        check = _outcome(raw, "spec.nodePools")
        assert len(check.summary()) < 1000


def test_non_mapping_specs_are_one_problem_at_spec() -> None:
    for raw in (["type", "Inference"], "Inference", 42):
        [problem] = check_spec(raw, CONFIG).problems  # type: ignore[arg-type]
        assert problem.path == "spec" and "expected an object" in problem.message


def test_every_workload_type_survives_the_controllers() -> None:
    seen = set()
    for doc in EXAMPLES:
        check = _outcome(doc["spec"])
        assert check.spec is not None
        seen.add(WorkloadType(check.spec.type))
    assert seen == set(WorkloadType)
