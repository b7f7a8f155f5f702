"""Resource quantities as the Kubernetes client reads them, and what is no quantity at all.

A value the client refuses must read as ``None`` (callers count it as no GPUs),
never raise into the index that reads a pod, node or Job body.
"""

from decimal import Decimal
from typing import Any

import pytest

from gpufinops.adapters.gpu_resources import node_gpu_count, pod_requests
from gpufinops.adapters.jobs import parse_quantity, pod_template_gpus
from gpufinops.core.gpus import GpuResource


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("500m", 0.5),
        ("1Gi", 1024.0**3),
        ("2", 2.0),
        (3, 3.0),
        (2.5, 2.5),
        (" 4 ", 4.0),
        ("1.5Ki", 1536.0),
        ("1e3", 1000.0),
        ("100u", 1e-4),
        ("0", 0.0),
    ],
)
def test_quantities(raw: Any, expected: float) -> None:
    assert parse_quantity(raw) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "junk",
        "",
        "1ki",  # only K, M, G, T, P, E have binary forms
        "1Qi",
        "-500m",
        -1,
        "Infinity",
        float("inf"),
        "NaN",
        float("nan"),
        "sNaN",  # a decimal that refuses to become a float
        "1e999999",
        "1e" + "9" * 5000,
        False,
        {"a": 1},
        [1],
    ],
)
def test_what_is_not_a_quantity_reads_as_none(raw: Any) -> None:
    assert parse_quantity(raw) is None


def test_the_result_is_a_float_not_the_clients_decimal() -> None:
    value = parse_quantity("250m")
    assert type(value) is float and not isinstance(value, Decimal)


def test_callers_count_an_unreadable_quantity_as_nothing() -> None:
    spec = {
        "containers": [
            {"resources": {"limits": {"nvidia.com/gpu": "junk", "cpu": "500m"}}},
            {"resources": {"requests": {"nvidia.com/gpu": "2"}}},
        ]
    }
    assert pod_template_gpus(spec) == 2.0
    assert pod_requests(spec) == {"nvidia.com/gpu": 2.0, "cpu": 0.5}
    rules = [GpuResource("nvidia.com/gpu")]
    node = {"status": {"allocatable": {"nvidia.com/gpu": "8", "memory": "bogus"}}}
    assert node_gpu_count(node, rules) == 8.0
