"""The one exception type of the local cluster."""


class ClusterError(RuntimeError):
    """The local cluster could not be built, started or queried."""
