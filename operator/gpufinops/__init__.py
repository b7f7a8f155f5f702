"""gpufinops: keeps AI workloads on Kubernetes fast and their GPU bill small."""

__version__ = "0.1.0"
