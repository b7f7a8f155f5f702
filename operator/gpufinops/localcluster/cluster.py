"""LocalCluster: etcd, kube-apiserver, controller-manager, scheduler, kwok and Prometheus
as plain local processes on loopback, with fake GPU nodes."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import crds, nodes, pki, processes, prometheus
from .binaries import REPO_ROOT, Binaries, find_binaries, find_kubectl
from .errors import ClusterError
from .kubeconfig import write_kubeconfig
from .kubectl import Kubectl
from .ports import HOST, PortMap
from .probes import http_get, http_ok

COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "prometheus",
)
SYSTEM_NAMESPACE = "gpufinops-system"
KWOK_POD_CIDR = "10.244.0.0/16"
READY_TIMEOUT = 120.0


OWN_STAGES = Path(__file__).with_name("kwok-stages.yaml")
"""Our stages next to kwok's (a deleted running pod turns Failed, as a kubelet makes it)."""


class LocalCluster:
    """A Kubernetes cluster of local processes whose state lives in ``state_dir``.

    ``up()`` is idempotent: components already running from ``state_dir`` are reused.
    ``down()`` stops every process started from ``state_dir`` and drops the etcd
    and Prometheus data (certificates, tokens and ports are kept for the next ``up``).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        with_controllers: bool = True,
        with_kwok: bool = True,
        with_prometheus: bool = True,
        crds_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.with_controllers = with_controllers
        self.with_kwok = with_kwok
        self.with_prometheus = with_prometheus
        self.crds_dir = crds_dir if crds_dir is not None else REPO_ROOT / "crds"
        self.timings: dict[str, float] = {}
        self._log = log or (lambda _msg: None)
        self._ports = PortMap(self.state_dir / "state.json")
        self._pki = pki.Pki(self.state_dir / "pki")
        self._run_dir = self.state_dir / "run"
        self._log_dir = self.state_dir / "logs"

    # -- addresses ---------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server_url(self) -> str:
        return f"https://{HOST}:{self._port('kube-apiserver')}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{HOST}:{self._port('prometheus')}"

    @property
    def log_dir(self) -> Path:
        return self._log_dir

    @property
    def prometheus_targets_dir(self) -> Path:
        """Where ``*.json`` file_sd target lists make Prometheus scrape more endpoints."""
        return prometheus.targets_dir(self.state_dir / "prometheus" / "prometheus.yml")

    def env(self) -> dict[str, str]:
        """Environment variables that point clients at this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def _port(self, name: str) -> int:
        if name not in self._ports.ports:
            raise ClusterError(f"{self.state_dir} holds no cluster state (run up first)")
        return self._ports[name]

    # -- kubectl -----------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; never raises on a non-zero exit."""
        return Kubectl(find_kubectl(), self.kubeconfig).run(*args, input=input)

    def apply(self, path: Path | str) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f path`` (a file, a directory or a URL); raises ClusterError."""
        return Kubectl(find_kubectl(), self.kubeconfig).check("apply", "-f", str(path))

    # -- status ------------------------------------------------------------------

    def pids(self) -> dict[str, int | None]:
        """Every component and its pid, or None when it is not running."""
        return {name: processes.running_pid(self._run_dir, name) for name in COMPONENTS}

    def expected_components(self) -> list[str]:
        wanted = ["etcd", "kube-apiserver"]
        if self.with_controllers:
            wanted += ["kube-controller-manager", "kube-scheduler"]
        if self.with_kwok:
            wanted.append("kwok")
        if self.with_prometheus:
            wanted.append("prometheus")
        return wanted

    def is_running(self) -> bool:
        """True when every expected component runs and the apiserver is ready."""
        pids = self.pids()
        if any(pids[name] is None for name in self.expected_components()):
            return False
        return self._apiserver_ready()

    # -- lifecycle ---------------------------------------------------------------

    def up(self) -> dict[str, float]:
        """Start (or reuse) every component; return the seconds each phase took."""
        with self._exclusive():
            return self._up()

    def down(self) -> None:
        """Stop every component started from ``state_dir`` and drop the cluster's data."""
        with self._exclusive():
            for name in reversed(COMPONENTS):
                processes.stop(self._run_dir, name)
            shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
            shutil.rmtree(self.state_dir / "prometheus" / "data", ignore_errors=True)

    def stop_component(self, name: str) -> None:
        """Stop one component (e.g. kube-apiserver, to test outages); ``up()`` restarts it."""
        if name not in COMPONENTS:
            raise ValueError(f"unknown component {name!r}; one of {', '.join(COMPONENTS)}")
        with self._exclusive():
            processes.stop(self._run_dir, name)

    def backfill(self, openmetrics: str) -> None:
        """Write past samples (OpenMetrics text, with timestamps) into the local
        Prometheus: it is stopped, the blocks are made in its data directory with
        promtool, and it is started again, which loads them."""
        if not self.with_prometheus:
            raise ClusterError("this cluster runs no Prometheus to backfill")
        with self._exclusive():
            bins = find_binaries(with_prometheus=True)
            assert bins.prometheus is not None
            processes.stop(self._run_dir, "prometheus")
            try:
                prometheus.create_blocks(
                    bins.prometheus, self.state_dir / "prometheus" / "data", openmetrics
                )
            except RuntimeError as exc:
                raise ClusterError(str(exc)) from exc
            finally:
                self._start_prometheus(bins)
                ready_url = f"{self.prometheus_url}/-/ready"
                self._wait(self._daemon("prometheus"), lambda: http_ok(ready_url))

    # -- internals ---------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise up/down of the same state directory across processes."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _up(self) -> dict[str, float]:
        self.timings = {}
        started = time.monotonic()
        with self._phase("binaries"):
            bins = find_binaries(with_prometheus=self.with_prometheus)
        with self._phase("pki"):
            anything_running = any(pid is not None for pid in self.pids().values())
            self._ports.ensure(recheck=not anything_running)
            pki.ensure_pki(self._pki.dir)
            self._write_kubeconfigs()
        kubectl = Kubectl(bins.kubectl, self.kubeconfig)
        with self._phase("etcd"):
            if self.with_prometheus:
                self._start_prometheus(bins)
            self._wait(self._start("etcd", self._etcd_argv(bins)), self._etcd_ready)
        with self._phase("kube-apiserver"):
            apiserver = self._start("kube-apiserver", self._apiserver_argv(bins))
            self._wait(apiserver, self._apiserver_ready)
        self._start_clients(bins)
        with self._phase("crds"):
            crds.install(kubectl, self.crds_dir)
        with self._phase("namespace+nodes"):
            self._ensure_namespace(kubectl)
            if self.with_kwok:
                kubectl.check("apply", "-f", "-", input=nodes.render(nodes.load_pools()))
        if self.with_controllers:
            with self._phase("controllers"):
                for name in ("kube-controller-manager", "kube-scheduler"):
                    self._wait(self._daemon(name), self._https_health(name))
                # Pods are admitted only once their namespace's default ServiceAccount exists.
                for namespace in ("default", SYSTEM_NAMESPACE):
                    sa_args = ["serviceaccount/default", "-n", namespace]
                    kubectl.check("wait", "--for=create", "--timeout=60s", *sa_args, timeout=70)
        if self.with_kwok:
            with self._phase("kwok+nodes-ready"):
                kwok_health = f"http://{HOST}:{self._port('kwok')}/healthz"
                self._wait(self._daemon("kwok"), lambda: http_ok(kwok_health))
                ready = ["--for=condition=Ready", "node", "-l", "type=kwok", "--timeout=60s"]
                kubectl.check("wait", *ready, timeout=70)
        if self.with_prometheus:
            with self._phase("prometheus"):
                ready_url = f"{self.prometheus_url}/-/ready"
                self._wait(self._daemon("prometheus"), lambda: http_ok(ready_url))
        self.timings["total"] = time.monotonic() - started
        self._log(f"cluster up in {self.timings['total']:.1f}s; KUBECONFIG={self.kubeconfig}")
        return dict(self.timings)

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - started
        self._log(f"{name:<20} {self.timings[name]:6.2f}s")

    def _daemon(self, name: str, argv: list[str] | None = None) -> processes.Daemon:
        return processes.Daemon(name, tuple(argv or ()), self._run_dir, self._log_dir)

    def _start(self, name: str, argv: list[str]) -> processes.Daemon:
        daemon = self._daemon(name, argv)
        if processes.running_pid(self._run_dir, name) is None:
            processes.start(daemon)
        return daemon

    def _wait(self, daemon: processes.Daemon, check: Callable[[], bool]) -> None:
        processes.wait_ready(daemon, check, timeout=READY_TIMEOUT)

    def _start_clients(self, bins: Binaries) -> None:
        """Start the apiserver's clients together; they are awaited later."""
        if self.with_controllers:
            self._start("kube-controller-manager", self._controller_manager_argv(bins))
            self._start("kube-scheduler", self._scheduler_argv(bins))
        if self.with_kwok:
            self._start("kwok", self._kwok_argv(bins))

    def _start_prometheus(self, bins: Binaries) -> None:
        assert bins.prometheus is not None
        listen = f"{HOST}:{self._port('prometheus')}"
        config = self.state_dir / "prometheus" / "prometheus.yml"
        prometheus.write_config(config, listen=listen)
        data = self.state_dir / "prometheus" / "data"
        argv = prometheus.argv(bins.prometheus, config=config, data_dir=data, listen=listen)
        self._start("prometheus", argv)

    def _ensure_namespace(self, kubectl: Kubectl) -> None:
        manifest = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {SYSTEM_NAMESPACE}\n"
        kubectl.check("apply", "-f", "-", input=manifest)

    def _component_kubeconfig(self, name: str) -> Path:
        return self._pki.dir / f"{name}.kubeconfig"

    def _write_kubeconfigs(self) -> None:
        users = {
            self.kubeconfig: "admin",
            self._component_kubeconfig("kube-controller-manager"): "system:kube-controller-manager",
            self._component_kubeconfig("kube-scheduler"): "system:kube-scheduler",
            self._component_kubeconfig("kwok"): "kwok",
        }
        for path, user in users.items():
            token = self._pki.token(user)
            write_kubeconfig(
                path, server=self.server_url, ca_cert=self._pki.ca_cert, user=user, token=token
            )

    def _etcd_ready(self) -> bool:
        body = http_get(f"http://{HOST}:{self._port('etcd-client')}/health")
        return body is not None and b'"true"' in body

    def _apiserver_ready(self) -> bool:
        if not self._pki.token_file.exists():
            return False
        token, url = self._pki.token("admin"), f"{self.server_url}/readyz"
        return http_ok(url, token=token, ca_cert=self._pki.ca_cert)

    def _https_health(self, name: str) -> Callable[[], bool]:
        url = f"https://{HOST}:{self._port(name)}/healthz"
        return lambda: http_ok(url, verify=False)

    # -- command lines -----------------------------------------------------------

    def _etcd_argv(self, bins: Binaries) -> list[str]:
        client = f"http://{HOST}:{self._port('etcd-client')}"
        peer = f"http://{HOST}:{self._port('etcd-peer')}"
        argv = [
            str(bins.etcd),
            "--name=local",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}",
            "--log-level=warn",
            # A single member on loopback: elect itself in ~0.1s instead of ~1s.
            "--heartbeat-interval=10",
            "--election-timeout=100",
        ]
        if _supports(bins.etcd, "--unsafe-no-fsync"):
            argv.append("--unsafe-no-fsync=true")
        return argv

    def _apiserver_argv(self, bins: Binaries) -> list[str]:
        p = self._pki
        return [
            str(bins.kube_apiserver),
            f"--etcd-servers=http://{HOST}:{self._port('etcd-client')}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={self._port('kube-apiserver')}",
            f"--cert-dir={p.dir / 'apiserver'}",
            f"--tls-cert-file={p.serving_cert}",
            f"--tls-private-key-file={p.serving_key}",
            f"--client-ca-file={p.ca_cert}",
            f"--token-auth-file={p.token_file}",
            # Nobody holds a front-proxy-client certificate; declaring the request-header
            # CA keeps delegating clients (controller-manager, scheduler) from complaining.
            f"--requestheader-client-ca-file={p.ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={pki.SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer={self.server_url}",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            "--allow-privileged=true",
            # The only endpoint is loopback, which a Service's endpoints may not hold.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def _controller_manager_argv(self, bins: Binaries) -> list[str]:
        p, kubeconfig = self._pki, self._component_kubeconfig("kube-controller-manager")
        return [
            str(bins.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={HOST}",
            f"--secure-port={self._port('kube-controller-manager')}",
            "--leader-elect=false",
            # One identity (a cluster admin, see pki.USERS) for all controllers.
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={p.sa_key}",
            f"--root-ca-file={p.ca_cert}",
            f"--cluster-signing-cert-file={p.ca_cert}",
            f"--cluster-signing-key-file={p.ca_key}",
            f"--service-cluster-ip-range={pki.SERVICE_CLUSTER_IP_RANGE}",
            "--profiling=false",
        ]

    def _scheduler_argv(self, bins: Binaries) -> list[str]:
        kubeconfig = self._component_kubeconfig("kube-scheduler")
        return [
            str(bins.kube_scheduler),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={HOST}",
            f"--secure-port={self._port('kube-scheduler')}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _kwok_argv(self, bins: Binaries) -> list[str]:
        return [
            str(bins.kwok),
            f"--kubeconfig={self._component_kubeconfig('kwok')}",
            f"--config={bins.kwok_stages}",
            f"--config={OWN_STAGES}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={nodes.KWOK_ANNOTATION}=fake",
            f"--server-address={HOST}:{self._port('kwok')}",
            f"--cidr={KWOK_POD_CIDR}",
            f"--node-ip={HOST}",
            "--node-lease-duration-seconds=40",
        ]


def _supports(binary: Path, flag: str) -> bool:
    proc = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=False)
    return flag in proc.stdout + proc.stderr
