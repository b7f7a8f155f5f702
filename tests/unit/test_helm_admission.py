"""The chart's tenant boundary, as rendered: the ValidatingAdmissionPolicy on AIWorkloads
and its binding, one rule per node pool reserved to some namespaces, and the
ClusterRoles for people (view, edit, budget-admin).

What the rules do on a real API server is tests/integration/test_tenant_admission.py.
helm is the binary built by ``hack/build-helm.sh`` (built on first use, then cached).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.support.helm_chart import NAMESPACE, ROOT, helm_binary, kinds, one, rendered, template

TENANCY = ROOT / "tests" / "helm-values" / "tenancy.yaml"

POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"

EDIT_RULES = {
    ("gpufinops.dev", "aiworkloads"): {
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    },
    ("gpufinops.dev", "aiworkloads/scale"): {"get", "update", "patch"},
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def run_helm(
    helm: Path, *args: str, release: str = "gpufinops"
) -> subprocess.CompletedProcess[str]:
    return template(helm, *args, release=release)


def render(helm: Path, *args: str, release: str = "gpufinops") -> list[dict[str, Any]]:
    """``helm template`` with raw arguments (``-f FILE``, ``--set K=V``)."""
    return rendered(template(helm, *args, release=release))


def sets(*values: str) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def flat(text: str) -> str:
    """An expression on one line, as the API server reads a folded YAML scalar."""
    return " ".join(text.split())


def validations(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = one(docs, "ValidatingAdmissionPolicy")["spec"]["validations"]
    return rules


def rule_for(docs: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """The validation whose message is about ``field``."""
    (found,) = [v for v in validations(docs) if v["message"].startswith(field)]
    return found


def pool_rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The per-pool validations, by pool name."""
    out = {}
    for v in validations(docs):
        if v["message"].startswith("spec.nodePools: node pool "):
            out[v["message"].split()[3]] = v
    return out


def roles(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in kinds(docs, "ClusterRole")}


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


# ------------------------------------------------------------------ the policy and its binding


def test_the_policy_is_on_by_default_and_denies(helm: Path) -> None:
    docs = render(helm)
    policy = one(docs, "ValidatingAdmissionPolicy")
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["metadata"]["name"] == "gpufinops-tenant-boundary"
    assert binding["spec"] == {
        "policyName": "gpufinops-tenant-boundary",
        "validationActions": ["Deny"],
    }
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert "paramKind" not in spec
    # The main resource only: status (the operator's) and scale writes are not seen.
    assert spec["matchConstraints"] == {
        "resourceRules": [
            {
                "apiGroups": ["gpufinops.dev"],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "resources": ["aiworkloads"],
            }
        ]
    }


def test_the_policy_can_report_only_or_be_left_out(helm: Path) -> None:
    report = render(
        helm,
        *sets(
            "admissionPolicy.failurePolicy=Ignore", "admissionPolicy.validationActions={Warn,Audit}"
        ),
    )
    assert one(report, "ValidatingAdmissionPolicy")["spec"]["failurePolicy"] == "Ignore"
    binding = one(report, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["validationActions"] == ["Warn", "Audit"]
    off = render(helm, *sets("admissionPolicy.enabled=false"))
    assert not any(kinds(off, kind) for kind in POLICY_KINDS)
    assert "gpufinops-budget-admin" in roles(off)  # the roles do not depend on it


@pytest.mark.parametrize(
    ("release", "values"),
    [
        ("gpufinops", []),
        ("shard-a", []),
        ("gpufinops", ["serviceAccount.name=finops-bot"]),
        ("gpufinops", ["serviceAccount.create=false"]),
    ],
    ids=["default", "release-name", "named-account", "existing-account"],
)
def test_the_operators_own_account_is_never_checked(
    helm: Path, release: str, values: list[str]
) -> None:
    docs = render(helm, *sets(*values), release=release)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    account = f"system:serviceaccount:{NAMESPACE}:{pod['serviceAccountName']}"
    conditions = one(docs, "ValidatingAdmissionPolicy")["spec"]["matchConditions"]
    assert conditions == [
        {"name": "not-the-operator", "expression": f"request.userInfo.username != '{account}'"}
    ]


def test_clusters_without_validating_admission_policies_are_told_to_turn_it_off(
    helm: Path,
) -> None:
    result = run_helm(helm, "--kube-version", "1.29.4")
    assert result.returncode != 0
    assert "Kubernetes 1.30 or later" in result.stderr
    assert "admissionPolicy.enabled=false" in result.stderr
    docs = render(helm, "--kube-version", "1.29.4", *sets("admissionPolicy.enabled=false"))
    assert not any(kinds(docs, kind) for kind in POLICY_KINDS)


# ------------------------------------------------------------------ the rules


# The permission each delegated field needs, as the authorizer is asked for it.
AUTHORIZER_CHECKS = {
    "spec.training.jobTemplate": [
        "authorizer.group('batch').resource('jobs').namespace(request.namespace)"
        " .check('create').allowed()",
    ],
    "spec.training.jobRef": [
        "authorizer.group('batch').resource('jobs').namespace(request.namespace)"
        " .name(object.spec.training.jobRef.name).check('update').allowed()",
    ],
    # The target's group and resource are variables (any kind with a scale subresource).
    "spec.inference.targetRef": [
        "authorizer.group(variables.targetGroup).resource(variables.targetResource)"
        " .subresource('scale').namespace(request.namespace)"
        " .name(object.spec.inference.targetRef.name).check('update').allowed()",
    ],
    # Spot replicas: the operator creates a Deployment per spot pool.
    "spec.inference.spot": [
        "authorizer.group('apps').resource('deployments').namespace(request.namespace)"
        " .check('create').allowed()",
    ],
    "spec.experiment.targetRef": [
        "object.spec.experiment.targetRef.kind == 'Job' ? authorizer.group('batch')"
        ".resource('jobs')",
        ".resource(object.spec.experiment.targetRef.kind == 'Deployment' ? 'deployments'"
        " : 'statefulsets') .subresource('scale')",
        ".name(object.spec.experiment.targetRef.name).check('update').allowed()",
    ],
    "spec.budget": ["variables.budgetAllowed"],
    "spec.mode": ["variables.budgetAllowed"],
}


@pytest.mark.parametrize("field", AUTHORIZER_CHECKS)
def test_each_delegated_field_asks_the_authorizer_for_its_permission(
    helm: Path, field: str
) -> None:
    rule = rule_for(render(helm), field)
    assert rule["reason"] == "Forbidden"
    for check in AUTHORIZER_CHECKS[field]:
        assert check in flat(rule["expression"]), rule["expression"]


def test_the_budget_is_a_virtual_subresource_checked_on_every_change(helm: Path) -> None:
    policy = one(render(helm), "ValidatingAdmissionPolicy")["spec"]
    variables = {v["name"]: flat(v["expression"]) for v in policy["variables"]}
    assert variables["budgetAllowed"] == (
        "authorizer.group('gpufinops.dev').resource('aiworkloads').subresource('budget')"
        " .namespace(request.namespace).name(variables.name).check('update').allowed()"
    )
    # Set, changed, removed, or the workload deleted (unless its namespace is going).
    assert variables["budgetChanged"] == (
        "request.operation == 'DELETE'"
        " ? variables.hadBudget && !has(namespaceObject.metadata.deletionTimestamp)"
        " : variables.hasBudget != variables.hadBudget ||"
        " (variables.hasBudget && object.spec.budget != oldObject.spec.budget)"
    )
    # object.metadata.name: request.name is empty on a CREATE with generateName.
    assert variables["name"] == (
        "request.operation == 'DELETE' ? oldObject.metadata.name : object.metadata.name"
    )


def test_every_rule_names_its_field_and_the_fix(helm: Path) -> None:
    rules = validations(render(helm, "-f", str(TENANCY)))
    fields = {v["message"].split(" ")[0].rstrip(":") for v in rules}
    assert fields == {
        "spec.training.jobTemplate",
        "spec.training.jobRef",
        "spec.inference.targetRef",
        "spec.inference.spot",
        "spec.experiment.targetRef",
        "spec.budget",
        "spec.mode",
        "spec.costAllocation.team",
        "spec.nodePools",
    }
    for rule in rules:
        assert rule["reason"] in ("Forbidden", "Invalid"), rule
        field = rule["message"].split(" ")[0].rstrip(":")
        # A message expression that fails falls back to the static message.
        assert field in flat(rule["messageExpression"]), rule
    for field in ("spec.budget", "spec.mode"):
        assert "gpufinops-budget-admin" in rule_for(render(helm), field)["message"]
    budget_fix = next(
        v
        for v in one(render(helm), "ValidatingAdmissionPolicy")["spec"]["variables"]
        if v["name"] == "budgetFix"
    )
    assert "ClusterRole gpufinops-budget-admin grants" in budget_fix["expression"]


def test_the_team_comes_from_the_namespaces_label(helm: Path) -> None:
    rule = rule_for(render(helm), "spec.costAllocation.team")
    assert flat(rule["expression"]) == (
        "!variables.specChanged || variables.team == '' ||"
        " object.spec.costAllocation.team == variables.team"
    )
    policy = one(render(helm), "ValidatingAdmissionPolicy")["spec"]
    variables = {v["name"]: flat(v["expression"]) for v in policy["variables"]}
    assert variables["team"] == (
        "'gpufinops.dev/team' in variables.labels ? variables.labels['gpufinops.dev/team'] : ''"
    )
    assert variables["labels"] == (
        "has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {}"
    )


# ------------------------------------------------------------------ node pools


def test_one_rule_per_pool_with_a_namespace_selector(helm: Path) -> None:
    rules = pool_rules(render(helm, "-f", str(TENANCY)))
    assert list(rules) == ["restricted", "l4-spot"]  # l4-on-demand is for every namespace
    guard = "!variables.specChanged || !has(object.spec.nodePools) ||"
    assert flat(rules["restricted"]["expression"]) == (
        f"{guard} !('restricted' in object.spec.nodePools) ||"
        " (('gpufinops.dev/team' in variables.labels &&"
        " variables.labels['gpufinops.dev/team'] == 'research'))"
    )
    assert rules["restricted"]["message"] == (
        "spec.nodePools: node pool restricted is reserved for namespaces matching "
        "gpufinops.dev/team=research"
    )
    # One matchExpression of each operator, as Kubernetes label selectors mean them.
    assert flat(rules["l4-spot"]["expression"]) == (
        f"{guard} !('l4-spot' in object.spec.nodePools) ||"
        " (('env' in variables.labels && variables.labels['env'] in ['prod', 'staging'])"
        " && !('tier' in variables.labels && variables.labels['tier'] in ['free'])"
        " && 'gpufinops.dev/team' in variables.labels"
        " && !('legacy' in variables.labels))"
    )
    assert rules["l4-spot"]["message"].endswith(
        "env in (prod,staging),tier notin (free),gpufinops.dev/team,!legacy"
    )
    for rule in rules.values():
        assert rule["reason"] == "Invalid"
        assert "+ request.namespace +" in flat(rule["messageExpression"])


def test_pools_without_a_selector_or_with_an_empty_one_get_no_rule(helm: Path) -> None:
    assert not pool_rules(render(helm))  # no pools
    pool = (
        "config.nodePools[0].name=open",
        "config.nodePools[0].selector.pool=open",
        "config.nodePools[0].instanceType=g6.12xlarge",
        "config.nodePools[0].capacityType=spot",
    )
    assert not pool_rules(render(helm, *sets(*pool)))
    empty = render(helm, *sets(*pool), "--set-json", "config.nodePools[0].namespaceSelector={}")
    assert not pool_rules(empty)
    labelled = render(helm, *sets(*pool, "config.nodePools[0].namespaceSelector.matchLabels.x=y"))
    assert flat(pool_rules(labelled)["open"]["expression"]).endswith(
        "(('x' in variables.labels && variables.labels['x'] == 'y'))"
    )


def test_a_label_value_cannot_break_out_of_its_cel_string(helm: Path) -> None:
    pool = (
        "config.nodePools[0].name=p",
        "config.nodePools[0].selector.pool=p",
        "config.nodePools[0].instanceType=g6.12xlarge",
        "config.nodePools[0].capacityType=spot",
        "config.nodePools[0].namespaceSelector.matchLabels.team=x' || true || 'x",
    )
    schema = run_helm(helm, *sets(*pool))
    assert schema.returncode != 0
    assert "/config/nodePools/0/namespaceSelector/matchLabels/team" in schema.stderr
    # And the template refuses it too, should the schema be skipped.
    template = run_helm(helm, *sets(*pool), "--skip-schema-validation")
    assert template.returncode != 0
    assert "cannot be used in the admission policy" in template.stderr


# ------------------------------------------------------------------ roles for people


def test_roles_for_people_aggregate_into_the_builtin_roles(helm: Path) -> None:
    found = roles(render(helm))
    view, edit = found["gpufinops-view"], found["gpufinops-edit"]
    budget_admin = found["gpufinops-budget-admin"]

    def aggregated_to(role: dict[str, Any]) -> set[str]:
        labels = role["metadata"]["labels"]
        return {
            k.removeprefix(AGGREGATE)
            for k, v in labels.items()
            if k.startswith(AGGREGATE) and v == "true"
        }

    # The built-in view aggregates into edit, and edit into admin.
    assert aggregated_to(view) == {"view"}
    assert aggregated_to(edit) == {"edit", "admin"}
    assert aggregated_to(budget_admin) == set(), "bound explicitly by platform admins"
    assert rules_of(view) == {
        ("gpufinops.dev", "aiworkloads"): {"get", "list", "watch"},
        ("gpufinops.dev", "aiworkloads/scale"): {"get"},
    }
    assert rules_of(edit) == EDIT_RULES
    assert rules_of(budget_admin) == {
        **EDIT_RULES,
        ("gpufinops.dev", "aiworkloads/budget"): {"update"},
    }


def test_no_role_for_people_grants_status_or_more_than_aiworkloads(helm: Path) -> None:
    found = roles(render(helm))
    for name in ("gpufinops-view", "gpufinops-edit", "gpufinops-budget-admin"):
        granted = rules_of(found[name])
        assert {group for group, _ in granted} == {"gpufinops.dev"}, name
        resources = {resource for _, resource in granted}
        assert resources <= {"aiworkloads", "aiworkloads/scale", "aiworkloads/budget"}, name
        assert ("aiworkloads/budget" in resources) == (name == "gpufinops-budget-admin")
        assert not any("*" in verbs for verbs in granted.values()), name


def test_roles_for_people_follow_the_release_and_can_be_left_out(helm: Path) -> None:
    shard = render(helm, release="shard-a")
    assert {
        "shard-a-gpufinops-view",
        "shard-a-gpufinops-edit",
        "shard-a-gpufinops-budget-admin",
    } <= set(roles(shard))
    assert "ClusterRole shard-a-gpufinops-budget-admin" in flat(
        next(
            v["expression"]
            for v in one(shard, "ValidatingAdmissionPolicy")["spec"]["variables"]
            if v["name"] == "budgetFix"
        )
    )
    without = render(helm, *sets("rbac.userRoles=false"))
    assert set(roles(without)) == {"gpufinops"}  # the operator's own role only
