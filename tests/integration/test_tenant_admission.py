"""The tenant boundary on the local control plane: an AIWorkload gives its author no
more power than their own RBAC (the chart's ValidatingAdmissionPolicy and roles).

The chart is rendered with ``tests/helm-values/tenancy.yaml`` (a pool ``restricted``
for namespaces labelled gpufinops.dev/team=research, a pool ``l4-spot`` with one
matchExpression of each operator, and ``l4-on-demand`` for everyone), and only its
policy, binding and ClusterRoles are applied: no operator runs, the API server holds
the boundary alone. People are impersonated by the admin:

- alice: ``<fullname>-edit`` in the search and research namespaces, and update on her
  own notebook's scale and her own Job (a Role with resourceNames);
- bob: ``<fullname>-edit`` and the built-in ``edit`` (may create Jobs and scale
  Deployments) in the search namespace;
- carol: ``<fullname>-budget-admin`` in the search namespace;
- dave: the built-in ``view``; erin: the built-in ``admin`` (both in search).

Each test contrasts a refusal with an allowed write of the same kind, so each fails
without the policy. What is referenced (Jobs, Deployments, StatefulSets) need not
exist: the policy checks permissions, as RBAC does.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.config import new_client_from_config
from tests.support.kube import KubectlRun, ok
from tests.support.polling import poll
from tests.support.tenancy import (
    as_user,
    can,
    drop_finalizers,
    experiment,
    inference,
    job_ref,
    job_template,
    manifest,
    render_chart,
    wait_for_permissions,
    workload,
)

from gpufinops.config.model import parse_config

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "tests" / "helm-values" / "tenancy.yaml"
RELEASE = "gpufinops-tenancy"
RELEASE_NS = "gpufinops-tenancy"  # only named by the policy's exemption: never created
FULLNAME = RELEASE  # the release name contains the chart's name
POLICY = f"{FULLNAME}-tenant-boundary"
EDIT, BUDGET_ADMIN = f"{FULLNAME}-edit", f"{FULLNAME}-budget-admin"
OPERATOR = f"system:serviceaccount:{RELEASE_NS}:{FULLNAME}"
SEARCH = "tenancy-search"
RESEARCH = "tenancy-research"
TEAMS = {SEARCH: "search", RESEARCH: "research"}
AIW = "aiworkloads.gpufinops.dev"

INSTALLED_KINDS = {
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ClusterRole",
    "ClusterRoleBinding",
}
"""What is applied from the rendered chart (the operator's own ClusterRole and its
binding too, for the test that the operator is never checked)."""

BINDINGS = {
    "alice": [(SEARCH, EDIT), (RESEARCH, EDIT)],
    "bob": [(SEARCH, EDIT), (SEARCH, "edit")],
    "carol": [(SEARCH, BUDGET_ADMIN)],
    "dave": [(SEARCH, "view")],
    "erin": [(SEARCH, "admin")],
}
NOTEBOOK = "alices-notebook"  # a StatefulSet alice may scale
ALICES_JOB = "alices-job"  # a Job alice may update
ALICES_SERVER = "alices-server"  # a Deployment alice may scale, not create


def _own_targets(namespace: str) -> str:
    """alice's Role on her own notebook and Job, and its binding."""
    return (
        manifest(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "alice-own-targets", "namespace": namespace},
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "resources": ["statefulsets/scale"],
                        "resourceNames": [NOTEBOOK],
                        "verbs": ["get", "update", "patch"],
                    },
                    {
                        "apiGroups": ["apps"],
                        "resources": ["deployments/scale"],
                        "resourceNames": [ALICES_SERVER],
                        "verbs": ["get", "update", "patch"],
                    },
                    {
                        "apiGroups": ["batch"],
                        "resources": ["jobs"],
                        "resourceNames": [ALICES_JOB],
                        "verbs": ["get", "update", "patch"],
                    },
                ],
            }
        )
        + "---\n"
        + manifest(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "alice-own-targets", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "alice-own-targets",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}
                ],
            }
        )
    )


def _tenant_namespace(kubectl: KubectlRun, namespace: str, **labels: str) -> None:
    """A namespace with ``labels``, and alice's Role on her own notebook and Job in it."""
    ok(kubectl("create", "namespace", namespace))
    if labels:
        ok(kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in labels.items())))
    ok(kubectl("apply", "-f", "-", input=_own_targets(namespace)))


def _bind(kubectl: KubectlRun, user: str, namespace: str, role: str) -> None:
    ok(
        kubectl(
            "create",
            "rolebinding",
            f"{user}-{role}",
            "-n",
            namespace,
            f"--clusterrole={role}",
            f"--user={user}",
        )
    )


def _notebook(name: str, namespace: str = SEARCH, **kw: Any) -> dict[str, Any]:
    """A workload alice may create: an Experiment on her own notebook."""
    return workload(name, namespace, experiment("StatefulSet", NOTEBOOK), **kw)


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The policy's refusal message; it must contain each of ``fragments``."""
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in: {result.stderr}"
    return result.stderr


def create(
    kubectl: KubectlRun, obj: dict[str, Any], *flags: str
) -> subprocess.CompletedProcess[str]:
    return kubectl("create", *flags, "-f", "-", input=manifest(obj))


def patch(
    kubectl: KubectlRun, name: str, body: Any, namespace: str = SEARCH, kind: str = "merge"
) -> subprocess.CompletedProcess[str]:
    return kubectl("patch", "aiw", name, "-n", namespace, f"--type={kind}", "-p", json.dumps(body))


# ---------------------------------------------------------------------- people


@pytest.fixture(scope="module")
def alice(kubectl: KubectlRun) -> KubectlRun:
    return as_user(kubectl, "alice", "tenants")


@pytest.fixture(scope="module")
def bob(kubectl: KubectlRun) -> KubectlRun:
    return as_user(kubectl, "bob", "tenants")


@pytest.fixture(scope="module")
def carol(kubectl: KubectlRun) -> KubectlRun:
    return as_user(kubectl, "carol", "platform")


@pytest.fixture(scope="module")
def boundary(kubectl: KubectlRun, alice: KubectlRun) -> Iterator[list[dict[str, Any]]]:
    """The chart's policy and roles applied, the tenant namespaces and bindings; all
    removed afterwards (the namespaces first, while the policy still holds)."""
    docs = [d for d in render_chart(RELEASE, RELEASE_NS, VALUES) if d["kind"] in INSTALLED_KINDS]
    objects = yaml.safe_dump_all(docs)
    try:
        ok(kubectl("apply", "-f", "-", input=objects))
        for namespace, team in TEAMS.items():
            _tenant_namespace(kubectl, namespace, **{"gpufinops.dev/team": team})
        for user, bindings in BINDINGS.items():
            for namespace, role in bindings:
                _bind(kubectl, user, namespace, role)
        _wait_for_rbac(kubectl)
        if any(d["kind"] == "ValidatingAdmissionPolicyBinding" for d in docs):
            _wait_for_policy(alice)
        yield docs
    finally:
        for namespace in TEAMS:
            drop_finalizers(kubectl, namespace)
        kubectl("delete", "namespace", *TEAMS, "--ignore-not-found", "--wait=true", "--timeout=90s")
        kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=true", input=objects)


def _wait_for_rbac(kubectl: KubectlRun) -> None:
    wait_for_permissions(
        kubectl,
        [
            ("alice", f"create {AIW} -n {SEARCH}"),
            ("alice", f"create {AIW} -n {RESEARCH}"),
            ("alice", f"update statefulsets.apps/{NOTEBOOK} --subresource=scale -n {RESEARCH}"),
            ("alice", f"update deployments.apps/{ALICES_SERVER} --subresource=scale -n {SEARCH}"),
            ("bob", f"create jobs.batch -n {SEARCH}"),
            ("carol", f"update {AIW} --subresource=budget -n {SEARCH}"),
            ("dave", f"list {AIW} -n {SEARCH}"),  # the built-in view, by aggregation
            ("erin", f"create {AIW} -n {SEARCH}"),  # the built-in admin, by aggregation
        ],
        "the bindings and the aggregated roles to apply",
    )


def _wait_for_policy(alice: KubectlRun) -> None:
    """The API server loads a new policy asynchronously: wait until it refuses."""
    probe = _notebook("probe", team="nobody")

    def refusing() -> bool:
        result = create(alice, probe, "--dry-run=server")
        return result.returncode != 0 and POLICY in result.stderr

    poll(refusing, "the admission policy to take effect")


# ---------------------------------------------------------------------- training


@pytest.mark.parametrize("privileged", [False, True], ids=["plain", "privileged"])
def test_a_job_template_needs_create_on_jobs(
    boundary: Any, alice: KubectlRun, bob: KubectlRun, privileged: bool
) -> None:
    obj = workload(
        f"template-{'privileged' if privileged else 'plain'}",
        SEARCH,
        job_template(privileged=privileged),
    )
    refused(
        create(alice, obj),
        "spec.training.jobTemplate",
        "alice needs create on jobs (group batch)",
        f"namespace {SEARCH}",
        "spec.training.jobRef",
    )
    ok(create(bob, obj))


def test_changing_a_job_template_needs_create_on_jobs(
    boundary: Any, alice: KubectlRun, bob: KubectlRun
) -> None:
    ok(create(bob, workload("template-changed", SEARCH, job_template())))
    image = [
        {
            "op": "replace",
            "path": "/spec/training/jobTemplate/template/spec/containers/0/image",
            "value": "example.com/miner:1",
        }
    ]
    refused(patch(alice, "template-changed", image, kind="json"), "spec.training.jobTemplate")
    # An edit that leaves the template as it is needs no right on Jobs.
    ok(patch(alice, "template-changed", {"spec": {"costAllocation": {"project": "other"}}}))
    ok(patch(bob, "template-changed", image, kind="json"))


def test_a_job_ref_needs_update_on_that_job(
    boundary: Any, alice: KubectlRun, bob: KubectlRun
) -> None:
    others = workload("ref-other", SEARCH, job_ref("someone-elses-job"))
    refused(
        create(alice, others),
        "spec.training.jobRef",
        "Job someone-elses-job",
        "alice needs update on jobs (group batch)",
    )
    ok(create(alice, workload("ref-own", SEARCH, job_ref(ALICES_JOB))))
    ok(create(bob, others))
    # Pointing an existing workload at another Job is checked as well.
    refused(
        patch(alice, "ref-own", {"spec": {"training": {"jobRef": {"name": "someone-elses-job"}}}}),
        "Job someone-elses-job",
    )


def test_a_job_ref_to_a_jobset_needs_update_on_that_jobset(
    boundary: Any, alice: KubectlRun, bob: KubectlRun
) -> None:
    section = job_ref("trainer")
    section["training"]["jobRef"]["kind"] = "JobSet"
    obj = workload("ref-jobset", SEARCH, section)
    # Rights on Jobs are not rights on JobSets: the built-in edit role has none on them.
    for user, name in ((alice, "alice"), (bob, "bob")):
        refused(
            create(user, obj),
            "spec.training.jobRef",
            "JobSet trainer",
            f"{name} needs update on jobsets (group jobset.x-k8s.io)",
        )


# ---------------------------------------------------------------------- targets


def test_an_inference_target_needs_update_on_its_scale(
    boundary: Any, alice: KubectlRun, bob: KubectlRun
) -> None:
    obj = workload("chat", SEARCH, inference("chat-server"))
    refused(
        create(alice, obj),
        "spec.inference.targetRef",
        "Deployment chat-server",
        "alice needs update on deployments/scale (group apps)",
    )
    ok(create(bob, obj))


def test_spot_replicas_need_create_on_deployments(
    boundary: Any, alice: KubectlRun, bob: KubectlRun
) -> None:
    """The operator creates a Deployment per spot pool: scaling the target is not enough."""
    section = inference(ALICES_SERVER)
    plain = workload("alices-chat", SEARCH, section)
    ok(create(alice, plain, "--dry-run=server"))
    section["inference"]["spot"] = {"pools": ["l4-spot"]}
    spot = workload("alices-chat", SEARCH, section)
    refused(
        create(alice, spot),
        "spec.inference.spot",
        "alice needs create on deployments (group apps)",
    )
    ok(create(bob, spot, "--dry-run=server"))


@pytest.mark.parametrize(
    ("ref", "permission", "edit_may"),
    [
        ({"kind": "StatefulSet"}, "statefulsets/scale (group apps)", True),
        ({"kind": "LeaderWorkerSet"}, "leaderworkersets/scale (group leaderworkerset.x-k8s.io)",
         False),
        ({"apiVersion": "serving.example.com/v1", "kind": "ModelServer"},
         "modelservers/scale (group serving.example.com)", False),
        ({"apiVersion": "serving.example.com/v1", "kind": "Policy"},
         "policies/scale (group serving.example.com)", False),
    ],
    ids=["statefulset", "leaderworkerset", "custom", "custom-plural-ies"],
)  # fmt: skip
def test_any_scalable_target_needs_update_on_its_own_scale(
    boundary: Any, alice: KubectlRun, bob: KubectlRun, ref: dict[str, str], permission: str,
    edit_may: bool,
) -> None:  # fmt: skip
    section = inference("chat-server")
    section["inference"]["targetRef"].update(ref)
    obj = workload(f"chat-{ref['kind'].lower()}", SEARCH, section)
    refused(
        create(alice, obj),
        "spec.inference.targetRef",
        f"{ref['kind']} chat-server",
        f"alice needs update on {permission}",
    )
    # The built-in edit role scales StatefulSets, not other groups' kinds: their owners
    # grant those (a CRD's aggregated roles), and without them the boundary holds.
    if edit_may:
        ok(create(bob, obj))
    else:
        refused(create(bob, obj), f"bob needs update on {permission}")


def test_whoever_changes_what_the_operator_does_needs_the_rights_it_uses(
    boundary: Any, alice: KubectlRun, bob: KubectlRun
) -> None:
    # bob may scale the Deployment and sets the workload up; alice may edit AIWorkloads
    # but not scale that Deployment: raising maxReplicas would scale it through the
    # operator as surely as naming it would.
    ok(create(bob, workload("chat-later", SEARCH, inference("chat-server"))))
    more = {"spec": {"inference": {"maxReplicas": 8}}}
    refused(patch(alice, "chat-later", more), "spec.inference.targetRef",
            "alice needs update on deployments/scale (group apps)")  # fmt: skip
    refused(patch(alice, "chat-later", {"spec": {"replicas": 3}}), "deployments/scale")
    ok(patch(bob, "chat-later", more))
    # what does not change the operator's work stays open to her
    ok(patch(alice, "chat-later", {"metadata": {"labels": {"tier": "gold"}}}))


@pytest.mark.parametrize(
    ("kind", "permission"),
    [
        ("Deployment", "deployments/scale (group apps)"),
        ("StatefulSet", "statefulsets/scale (group apps)"),
        ("Job", "jobs (group batch)"),
    ],
)
def test_an_experiment_target_needs_update_on_it(
    boundary: Any, alice: KubectlRun, bob: KubectlRun, kind: str, permission: str
) -> None:
    obj = workload(f"sandbox-{kind.lower()}", SEARCH, experiment(kind, "shared-sandbox"))
    refused(
        create(alice, obj),
        "spec.experiment.targetRef",
        f"{kind} shared-sandbox",
        f"alice needs update on {permission}",
    )
    ok(create(bob, obj))


# ---------------------------------------------------------------------- budgets


def _with_budget(name: str, alice: KubectlRun, carol: KubectlRun, monthly: float = 100) -> None:
    """alice's notebook workload, to which carol adds a budget."""
    ok(create(alice, _notebook(name)))
    ok(patch(carol, name, {"spec": {"budget": {"monthlyUSD": monthly}}}))


def test_only_budget_admins_set_a_budget(
    boundary: Any, kubectl: KubectlRun, alice: KubectlRun, carol: KubectlRun
) -> None:
    budget = {"monthlyUSD": 10000}
    refused(
        create(alice, _notebook("budget-new", budget=budget)),
        "spec.budget: setting a budget",
        "update on aiworkloads/budget",
        f"ClusterRole {BUDGET_ADMIN}",
    )
    # A namespace admin (the built-in admin role) is no budget admin either.
    erin = as_user(kubectl, "erin", "tenants")
    refused(create(erin, _notebook("budget-new", budget=budget)), "spec.budget")
    ok(create(alice, _notebook("budget-new")))
    refused(
        patch(alice, "budget-new", {"spec": {"budget": budget}}), "spec.budget: setting a budget"
    )
    ok(patch(carol, "budget-new", {"spec": {"budget": budget}}))


def test_only_budget_admins_change_or_remove_a_budget(
    boundary: Any, alice: KubectlRun, carol: KubectlRun
) -> None:
    _with_budget("budget-held", alice, carol)
    raise_ = {"spec": {"budget": {"monthlyUSD": 100000}}}
    remove = [{"op": "remove", "path": "/spec/budget"}]
    refused(patch(alice, "budget-held", raise_), "spec.budget: changing the budget", BUDGET_ADMIN)
    refused(patch(alice, "budget-held", remove, kind="json"), "spec.budget: removing the budget")
    # Recommend mode changes nothing, so it would switch the enforcement off.
    refused(patch(alice, "budget-held", {"spec": {"mode": "Recommend"}}), "spec.mode", BUDGET_ADMIN)
    # The rest of the workload stays the team's own.
    ok(patch(alice, "budget-held", {"spec": {"costAllocation": {"environment": "dev"}}}))
    ok(patch(carol, "budget-held", raise_))
    ok(patch(carol, "budget-held", {"spec": {"mode": "Recommend"}}))
    ok(patch(carol, "budget-held", remove, kind="json"))


def test_only_budget_admins_delete_a_workload_with_a_budget(
    boundary: Any, alice: KubectlRun, carol: KubectlRun
) -> None:
    _with_budget("budget-kept", alice, carol)
    refused(
        alice("delete", "aiw", "budget-kept", "-n", SEARCH),
        "deleting AIWorkload budget-kept removes its spec.budget",
        BUDGET_ADMIN,
    )
    ok(create(alice, _notebook("budget-none")))
    ok(alice("delete", "aiw", "budget-none", "-n", SEARCH))
    ok(carol("delete", "aiw", "budget-kept", "-n", SEARCH))


def test_a_namespace_with_budgets_can_still_be_deleted(
    boundary: Any, kubectl: KubectlRun, alice: KubectlRun, carol: KubectlRun
) -> None:
    """The namespace controller may delete anything but update nothing: emptying a
    namespace that is being deleted must not need the budget permission, or the
    namespace would stay Terminating for ever. (The local controller-manager runs as
    an admin, so the controller's own ServiceAccount is impersonated here.)"""
    namespace = "tenancy-doomed"
    controller = as_user(
        kubectl, "system:serviceaccount:kube-system:namespace-controller", "system:serviceaccounts"
    )
    _tenant_namespace(kubectl, namespace, **{"gpufinops.dev/team": "search"})
    try:
        _bind(kubectl, "alice", namespace, EDIT)
        _bind(kubectl, "carol", namespace, BUDGET_ADMIN)
        wait_for_permissions(
            kubectl,
            [
                ("carol", f"update {AIW} --subresource=budget -n {namespace}"),
                ("alice", f"create {AIW} -n {namespace}"),
                (
                    "alice",
                    f"update statefulsets.apps/{NOTEBOOK} --subresource=scale -n {namespace}",
                ),
            ],
            "the bindings in the new namespace",
        )
        ok(create(alice, _notebook("doomed", namespace)))
        ok(patch(carol, "doomed", {"spec": {"budget": {"dailyUSD": 5}}}, namespace))
        # A finalizer keeps the workload while the namespace is Terminating.
        ok(patch(kubectl, "doomed", {"metadata": {"finalizers": ["example.com/hold"]}}, namespace))
        refused(
            alice("delete", "aiw", "doomed", "-n", namespace, "--wait=false"),
            "removes its spec.budget",
        )
        refused(
            controller("delete", "aiw", "doomed", "-n", namespace, "--wait=false"),
            "removes its spec.budget",
        )
        ok(kubectl("delete", "namespace", namespace, "--wait=false"))
        poll(
            lambda: (
                controller("delete", "aiw", "doomed", "-n", namespace, "--wait=false").returncode
                == 0
            ),
            "the namespace controller's delete to pass once the namespace terminates",
        )
    finally:
        drop_finalizers(kubectl, namespace)
        kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
    poll(lambda: kubectl("get", "namespace", namespace).returncode != 0, "the namespace to be gone")


# ---------------------------------------------------------------------- teams and pools


def test_spend_is_booked_to_the_namespaces_team(boundary: Any, alice: KubectlRun) -> None:
    refused(
        create(alice, _notebook("team-other", team="research")),
        'spec.costAllocation.team must be "search"',
        f"namespace {SEARCH}",
        "gpufinops.dev/team",
    )
    ok(create(alice, _notebook("team-own", team="search")))
    ok(create(alice, _notebook("team-own", RESEARCH, team="research")))
    refused(
        patch(alice, "team-own", {"spec": {"costAllocation": {"team": "research"}}}),
        "spec.costAllocation.team",
    )


def test_a_restricted_pool_serves_only_its_namespaces(boundary: Any, alice: KubectlRun) -> None:
    refused(
        create(alice, _notebook("pool-restricted", pools=["restricted"])),
        "spec.nodePools: node pool restricted is reserved for namespaces matching "
        "gpufinops.dev/team=research",
        f"namespace {SEARCH} does not match",
    )
    ok(create(alice, _notebook("pool-open", pools=["l4-on-demand"])))
    # Unknown pools are the operator's to report (InvalidSpec), not the policy's.
    ok(create(alice, _notebook("pool-unknown", pools=["no-such-pool"])))
    ok(
        create(
            alice,
            _notebook(
                "pool-restricted", RESEARCH, team="research", pools=["restricted", "l4-on-demand"]
            ),
        )
    )
    refused(
        patch(alice, "pool-open", {"spec": {"nodePools": ["l4-on-demand", "restricted"]}}),
        "node pool restricted",
    )


NAMESPACE_LABELS = [
    {"env": "prod", "tier": "paid", "gpufinops.dev/team": "search"},
    {"env": "staging", "gpufinops.dev/team": "search"},
    {"env": "dev", "gpufinops.dev/team": "search"},
    {"env": "prod", "tier": "free", "gpufinops.dev/team": "search"},
    {"env": "prod"},
    {"env": "prod", "gpufinops.dev/team": "search", "legacy": "true"},
    {},
]


def test_pool_selectors_match_namespaces_as_the_operator_does(
    boundary: Any, kubectl: KubectlRun
) -> None:
    """Pool l4-spot's namespaceSelector has one matchExpression of each operator: the
    policy's CEL and the operator's LabelSelector agree on every namespace."""
    config = parse_config(yaml.safe_load(VALUES.read_text())["config"])
    pool = config.pool("l4-spot")
    assert pool is not None and pool.namespace_selector is not None
    names = [f"tenancy-labels-{i}" for i in range(len(NAMESPACE_LABELS))]
    try:
        for name, labels in zip(names, NAMESPACE_LABELS, strict=True):
            ok(kubectl("create", "namespace", name))
            if labels:
                ok(kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items())))
        admitted, expected = [], []
        for name, labels in zip(names, NAMESPACE_LABELS, strict=True):
            team = labels.get("gpufinops.dev/team", "search")
            obj = workload(
                "spot", name, experiment("StatefulSet", "notebook"), team=team, pools=["l4-spot"]
            )
            result = create(kubectl, obj, "--dry-run=server")
            assert result.returncode == 0 or "node pool l4-spot" in result.stderr, result.stderr
            admitted.append(result.returncode == 0)
            labels = {**labels, "kubernetes.io/metadata.name": name}
            expected.append(pool.namespace_selector.matches(labels))
        assert admitted == expected == [True, True, False, False, False, False, False]
    finally:
        kubectl("delete", "namespace", *names, "--ignore-not-found", "--wait=false")


# ---------------------------------------------------------------------- roles and the operator


def test_roles_aggregate_and_never_grant_status_or_budgets(
    boundary: Any, kubectl: KubectlRun, alice: KubectlRun, carol: KubectlRun
) -> None:
    ok(create(alice, _notebook("roles")))
    assert "roles" in ok(alice("get", "aiw", "-n", SEARCH))
    status = '{"status": {"conditions": []}}'
    denied = alice(
        "patch", "aiw", "roles", "-n", SEARCH, "--subresource=status", "--type=merge", "-p", status
    )
    # (kubectl reads the status subresource first, which no role for people grants either.)
    assert 'resource "aiworkloads/status"' in denied.stderr, denied.stderr
    assert 'User "alice" cannot' in denied.stderr, denied.stderr
    people = {user: as_user(kubectl, user) for user in ("alice", "bob", "carol", "dave", "erin")}
    for user, who in people.items():
        assert can(who, "list", AIW, "-n", SEARCH), user
        assert not can(who, "patch", AIW, "--subresource=status", "-n", SEARCH), user
        assert can(who, "update", AIW, "--subresource=budget", "-n", SEARCH) == (user == "carol")
        assert can(who, "create", AIW, "-n", SEARCH) == (user != "dave"), user
    assert can(people["alice"], "update", AIW, "--subresource=scale", "-n", SEARCH)
    assert not can(people["alice"], "create", "jobs.batch", "-n", SEARCH)
    # And the policy, not only RBAC, holds the budget: alice is refused by it.
    refused(create(alice, _notebook("roles-budget", budget={"dailyUSD": 1})), "spec.budget")


def test_the_operator_is_never_checked(
    boundary: Any, kubeconfig: Path, alice: KubectlRun, carol: KubectlRun
) -> None:
    """Through the API as the operator does it (kubectl patch would first get the
    object, which the operator's ClusterRole does not grant)."""
    _with_budget("operated", alice, carol)
    raise_ = {"spec": {"budget": {"monthlyUSD": 999}}}
    refused(patch(alice, "operated", raise_), "spec.budget")
    api = new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    api.set_default_header("Impersonate-User", OPERATOR)
    try:
        objects = client.CustomObjectsApi(api)
        where = ("gpufinops.dev", "v1alpha1", SEARCH, "aiworkloads", "operated")
        # The operator never writes a spec, but if it did, the policy would not stop it.
        objects.patch_namespaced_custom_object(*where, raise_)
        # What it does write: Kopf's annotations and finalizer, and status.
        kopf = {
            "metadata": {
                "finalizers": ["gpufinops.dev/test"],
                "annotations": {"gpufinops.dev/last-handled": "{}"},
            }
        }
        objects.patch_namespaced_custom_object(*where, kopf)
        objects.patch_namespaced_custom_object(*where, {"metadata": {"finalizers": None}})
        objects.patch_namespaced_custom_object_status(*where, {"status": {"observedGeneration": 1}})
    finally:
        api.close()
    spec = json.loads(ok(alice("get", "aiw", "operated", "-n", SEARCH, "-o", "json")))["spec"]
    assert spec["budget"]["monthlyUSD"] == 999


def test_writes_that_leave_the_spec_alone_are_never_refused(
    boundary: Any, kubectl: KubectlRun, alice: KubectlRun
) -> None:
    """A workload that no longer conforms (its namespace changed team) can still get
    labels and lose finalizers; a change to its spec must bring it back in line."""
    namespace = "tenancy-relabelled"
    _tenant_namespace(kubectl, namespace, **{"gpufinops.dev/team": "search"})
    try:
        _bind(kubectl, "alice", namespace, EDIT)
        wait_for_permissions(
            kubectl,
            [
                ("alice", f"create {AIW} -n {namespace}"),
                (
                    "alice",
                    f"update statefulsets.apps/{NOTEBOOK} --subresource=scale -n {namespace}",
                ),
            ],
            "alice's bindings in the new namespace",
        )
        ok(create(alice, _notebook("moved", namespace)))
        ok(patch(alice, "moved", {"metadata": {"finalizers": ["example.com/keep"]}}, namespace))
        ok(kubectl("label", "namespace", namespace, "gpufinops.dev/team=ads", "--overwrite"))
        poll(
            lambda: (
                POLICY in create(alice, _notebook("probe", namespace), "--dry-run=server").stderr
            ),
            "the policy to see the namespace's new team",
        )
        ok(patch(alice, "moved", {"metadata": {"labels": {"tier": "gold"}}}, namespace))
        ok(patch(alice, "moved", {"metadata": {"finalizers": None}}, namespace))
        refused(
            patch(alice, "moved", {"spec": {"costAllocation": {"project": "x"}}}, namespace),
            'spec.costAllocation.team must be "ads"',
            'not "search"',
        )
        ok(patch(alice, "moved", {"spec": {"costAllocation": {"team": "ads"}}}, namespace))
    finally:
        drop_finalizers(kubectl, namespace)
        kubectl(
            "delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=60s"
        )
