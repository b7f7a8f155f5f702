"""Keeping the forecaster's model fits on one thread while simulating."""

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run scikit-learn's OpenMP loops on one thread.

    The simulator fits and queries the model thousands of times on small data:
    a second OpenMP thread spin-waits at every barrier, doubling CPU time for no
    gain in wall time, and two simulations side by side oversubscribe the cores
    and slow each other tenfold. Results do not depend on the thread count.
    """
    try:
        # threadpoolctl only limits the libraries already loaded: load scikit-learn's first.
        import sklearn.ensemble  # noqa: F401
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        yield
        return
    with threadpool_limits(limits=1):
        yield
