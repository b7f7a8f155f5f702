"""The spec handler on an operator restart: silent when the status already says it all."""

import logging
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from gpufinops.config import load_config
from gpufinops.handlers.aiworkload import spec_changed
from gpufinops.handlers.context import OperatorContext

SPEC = {
    "type": "Inference",
    "costAllocation": {"team": "search"},
    "inference": {"targetRef": {"name": "llm"}, "maxReplicas": 4},
}


def _run(status: dict[str, Any], reason: kopf.Reason) -> dict[str, Any]:
    patch = kopf.Patch()
    handler: Any = spec_changed  # called as Kopf calls it, with the kwargs it uses
    handler(
        body={"metadata": {"name": "chat", "generation": 2}, "spec": SPEC},
        spec=SPEC,
        status=status,
        meta={"generation": 2},
        patch=patch,
        memo=SimpleNamespace(context=OperatorContext(config=load_config(None), api=None)),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        reason=reason,
        namespace="ns",
        namespace_labels={"ns": [{}]},
    )
    return dict(patch.get("status") or {})


def test_a_restart_over_an_unchanged_workload_writes_nothing_and_posts_no_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(kw["reason"]))
    written = _run({}, kopf.Reason.CREATE)
    assert written["observedGeneration"] == 2 and written["target"] == "Deployment/llm"
    assert events == ["Accepted"]

    assert _run(written, kopf.Reason.RESUME) == {}
    assert events == ["Accepted"], "no second Event for the same news"

    # anything that differs (here: an older generation observed) is written again
    stale = {**written, "observedGeneration": 1}
    assert _run(stale, kopf.Reason.RESUME)["observedGeneration"] == 2
    # and a create or update is always reported
    assert _run(written, kopf.Reason.UPDATE)["observedGeneration"] == 2
    assert events == ["Accepted", "Accepted", "Accepted"]


def test_the_target_each_workload_claims() -> None:
    from gpufinops.handlers.aiworkload import claimed_target, rival_claims, target_claims

    assert claimed_target("chat", SPEC) == ("Deployment", "llm")
    sandbox = {"type": "Experiment", "experiment": {"targetRef": {"kind": "StatefulSet",
                                                                  "name": "nb"}}}  # fmt: skip
    assert claimed_target("x", sandbox) == ("StatefulSet", "nb")
    assert claimed_target("ft", {"type": "Training", "training": {"jobTemplate": {}}}) == (
        "Job", "ft",
    )  # fmt: skip
    by_ref = {"type": "Training", "training": {"jobRef": {"name": "mine"}}}
    assert claimed_target("ft", by_ref) == ("Job", "mine")
    assert claimed_target("x", {"type": "Inference"}) is None
    handler: Any = target_claims
    index = {}
    for name in ("chat", "chat-2"):
        for key, value in handler(namespace="ns", name=name, spec=SPEC).items():
            index.setdefault(key, []).append(value)
    indexes = {"target_claims": index}
    assert rival_claims(indexes, "ns", "Deployment", "llm", "chat") == ["AIWorkload/chat-2"]
    assert rival_claims(indexes, "ns", "Deployment", "other", "chat") == []
