"""gpufinops: keeps AI workloads on Kubernetes fast and their GPU bill small."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpufinops")
    """The installed distribution's version: pyproject.toml is the one place it is set."""
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"
