"""What a namespace's AIWorkload may ask the operator to do (``core.tenancy``): the
checks the operator makes itself, so a cluster without the admission policy still
refuses overreach in ``InvalidSpec``."""

from typing import Any

import pytest

from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.cost import WorkloadView
from gpufinops.core.tenancy import TEAM_LABEL, NamespaceView, booked_spec, job_template_problems
from gpufinops.core.validation import check_spec
from gpufinops.handlers.cost import booked

CONFIG = OperatorConfig.model_validate({
    "nodePools": [
        {"name": "open", "selector": {"pool": "open"}, "instanceType": "g6.xlarge",
         "capacityType": "on-demand"},
        {"name": "research-only", "selector": {"pool": "r"}, "instanceType": "g6.xlarge",
         "capacityType": "spot",
         "namespaceSelector": {"matchLabels": {TEAM_LABEL: "research"},
                               "matchExpressions": [{"key": "env", "operator": "NotIn",
                                                     "values": ["prod"]}]}},
    ],
})  # fmt: skip
SEARCH = NamespaceView("search-ns", {TEAM_LABEL: "search"})


def training(pod: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    pod_spec = {"containers": [{"name": "c", "image": "x"}], **(pod or {})}
    return {
        "type": "Training", "costAllocation": {"team": "search"},
        "training": {"jobTemplate": {"template": {"spec": pod_spec}}},
        **spec,
    }  # fmt: skip


def problems(spec: dict[str, Any], ns: NamespaceView = SEARCH, config: OperatorConfig = CONFIG):
    check = check_spec(spec, config, ns)
    assert check.spec is None or check.valid
    return [p.path for p in check.problems]


def test_a_plain_training_template_in_its_own_teams_namespace_is_fine() -> None:
    assert problems(training()) == []
    assert problems(training(nodePools=["open"])) == []
    # without a namespace, no tenancy check (the estimate, for instance)
    assert check_spec(training(nodePools=["research-only"]), CONFIG).valid


def test_cost_is_booked_to_the_namespaces_team() -> None:
    spec = training(costAllocation={"team": "finance"})
    assert problems(spec) == ["spec.costAllocation.team"]
    assert problems(spec, NamespaceView("shared")) == []  # no team label: free text


def test_a_pool_is_used_only_by_the_namespaces_it_admits() -> None:
    spec = training(nodePools=["open", "research-only"])
    assert problems(spec) == ["spec.nodePools[1]"]
    research = NamespaceView("r", {TEAM_LABEL: "research"})
    assert problems(training(costAllocation={"team": "research"}, nodePools=["research-only"]),
                    research) == []  # fmt: skip
    prod = NamespaceView("r", {TEAM_LABEL: "research", "env": "prod"})
    assert problems(training(costAllocation={"team": "research"}, nodePools=["research-only"]),
                    prod) == ["spec.nodePools[0]"]  # fmt: skip


@pytest.mark.parametrize(
    ("pod", "path"),
    [
        ({"hostPID": True}, "hostPID"),
        ({"hostNetwork": True}, "hostNetwork"),
        ({"hostIPC": True}, "hostIPC"),
        ({"hostUsers": True}, "hostUsers"),
        ({"nodeName": "gpu-1"}, "nodeName"),
        ({"serviceAccountName": "admin"}, "serviceAccountName"),
        ({"priorityClassName": "system-cluster-critical"}, "priorityClassName"),
        ({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, "volumes[0].hostPath"),
        ({"containers": [{"name": "c", "securityContext": {"privileged": True}}]},
         "containers[0].securityContext.privileged"),
        ({"initContainers": [{"name": "i", "securityContext": {"capabilities": {
            "add": ["SYS_ADMIN", "CHOWN"]}}}]},
         "initContainers[0].securityContext.capabilities.add"),
        ({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]},
         "containers[0].ports[0].hostPort"),
    ],
)  # fmt: skip
def test_a_job_template_gets_nothing_beyond_the_baseline(pod: dict[str, Any], path: str) -> None:
    assert problems(training(pod)) == [f"spec.training.jobTemplate.template.spec.{path}"]


def test_what_the_baseline_allows_and_what_the_config_may_open() -> None:
    fine = {"serviceAccountName": "default", "hostUsers": False,
            "containers": [{"name": "c", "securityContext": {"capabilities": {
                "add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}}]}  # fmt: skip
    assert job_template_problems({"template": {"spec": fine}}) == []
    critical = training({"priorityClassName": "training-high"})
    allowed = CONFIG.model_copy(deep=True)
    allowed.tenancy.allowed_priority_classes = ["training-high"]
    assert problems(critical, config=allowed) == []
    host = training({"hostNetwork": True})
    unrestricted = CONFIG.model_copy(deep=True)
    unrestricted.tenancy = unrestricted.tenancy.model_validate({"jobTemplates": "Unrestricted"})
    assert problems(host, config=unrestricted) == []


def test_a_job_ref_is_not_the_operators_to_vet() -> None:
    spec = {"type": "Training", "costAllocation": {"team": "search"},
            "training": {"jobRef": {"name": "mine"}}}  # fmt: skip
    assert problems(spec) == []


def test_spend_is_booked_to_the_namespaces_team_whatever_the_spec_claims() -> None:
    spec = training(costAllocation={"team": "finance", "project": "p"})
    assert booked_spec(spec, SEARCH)["costAllocation"] == {"team": "search", "project": "p"}
    assert booked_spec(spec, NamespaceView("shared"))["costAllocation"]["team"] == "finance"
    view = WorkloadView("search-ns", "w", {}, spec, {}, {})
    indexes = {"namespace_labels": {"search-ns": [{TEAM_LABEL: "search"}]}}
    (charged,) = booked([view], indexes)
    assert charged.spec["costAllocation"]["team"] == "search" and charged.name == "w"


def test_a_spec_naming_no_pool_acts_on_every_pool_open_to_its_namespace() -> None:
    config = OperatorConfig.model_validate(
        {
            "nodePools": [
                {"name": "spot", "selector": {"p": "spot"}, "instanceType": "g6.12xlarge",
                 "capacityType": "spot"},
                {"name": "reserved", "selector": {"p": "r"}, "instanceType": "p4d.24xlarge",
                 "capacityType": "on-demand",
                 "namespaceSelector": {"matchLabels": {"gpufinops.dev/team": "research"}}},
                {"name": "od", "selector": {"p": "od"}, "instanceType": "g6.12xlarge",
                 "capacityType": "on-demand"},
            ]
        }
    )  # fmt: skip
    raw = {
        "type": "Training",
        "costAllocation": {"team": "search"},
        "training": {"jobRef": {"name": "j"}},
    }
    spec = check_spec(raw, config, NamespaceView("search")).spec
    assert spec is not None and spec.node_pools == ["spot", "od"]
    research = NamespaceView("lab", {"gpufinops.dev/team": "research"})
    spec = check_spec({**raw, "costAllocation": {"team": "research"}}, config, research).spec
    assert spec is not None and spec.node_pools == ["spot", "reserved", "od"]
    named = check_spec({**raw, "nodePools": ["od"]}, config, NamespaceView("search")).spec
    assert named is not None and named.node_pools == ["od"]  # a list given is kept
