"""Credentials for the Kubernetes client: in-cluster first, then the kube context."""

from kubernetes import client, config


def load_kube_config(context: str | None = None) -> client.ApiClient:
    """An API client for the cluster the operator runs in (or the current context)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(context=context)  # type: ignore[no-untyped-call]
    return client.ApiClient()
