"""Which resources are GPUs and what they are worth (``core.gpus``): the one rule that
idle shutdown, cost allocation and the CI estimate share."""

from gpufinops.config.model import OperatorConfig
from gpufinops.core.gpus import DEFAULT_GPU_RESOURCES, gpu_use, node_gpus, rules_of

RULES = DEFAULT_GPU_RESOURCES


def test_every_common_gpu_resource_is_gpu_work() -> None:
    common = ("nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-1g.5gb", "amd.com/gpu",
              "gpu.intel.com/i915", "gpu.intel.com/xe", "nvidia.com/gpumem",
              "nvidia.com/gpucores", "gpu.intel.com/millicores")  # fmt: skip
    for resource in common:
        assert gpu_use({resource: 1}, 0, RULES).work, resource
    assert not gpu_use({"cpu": 4, "example.com/nic": 1}, 0, RULES).work


def test_a_resource_claim_is_gpu_work_worth_no_gpus_here() -> None:
    assert gpu_use({}, 1, RULES) == gpu_use({}, 2, RULES)
    assert gpu_use({}, 1, RULES).work and gpu_use({}, 1, RULES).gpus == 0


def test_what_a_unit_is_worth() -> None:
    assert gpu_use({"nvidia.com/gpu": 2}, 0, RULES).gpus == 2
    assert gpu_use({"nvidia.com/mig-3g.40gb": 1}, 0, RULES).gpus == 3 / 7
    assert gpu_use({"nvidia.com/mig-7g.80gb": 1}, 0, RULES).gpus == 1
    assert gpu_use({"amd.com/gpu": 1}, 0, RULES).gpus == 1
    # HAMi: the vGPU is counted through nvidia.com/gpu, its memory and cores add nothing
    hami = {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 3000, "nvidia.com/gpucores": 30}
    assert gpu_use(hami, 0, RULES).gpus == 1


def test_shared_replicas_are_worth_a_share_of_the_device() -> None:
    shared = {"nvidia.com/gpu.replicas": "4"}
    assert gpu_use({"nvidia.com/gpu.shared": 1}, 0, RULES, shared).gpus == 0.25
    # time-slicing without renaming: the replicas are still called nvidia.com/gpu
    assert gpu_use({"nvidia.com/gpu": 2}, 0, RULES, shared).gpus == 0.5
    assert gpu_use({"nvidia.com/gpu.shared": 1}, 0, RULES).gpus == 1  # label unknown
    assert gpu_use({"amd.com/gpu": 1}, 0, RULES, shared).gpus == 1


def test_a_node_counts_its_physical_gpus() -> None:
    assert node_gpus({"nvidia.com/gpu": 7, "nvidia.com/mig-1g.5gb": 7}, {}, RULES) == 8
    assert node_gpus({"nvidia.com/gpu": 16}, {"nvidia.com/gpu.count": "4"}, RULES) == 4
    shared = {"nvidia.com/gpu.replicas": "4"}
    assert node_gpus({"nvidia.com/gpu.shared": 16}, shared, RULES) == 4
    assert node_gpus({"amd.com/gpu": 8, "cpu": 96}, {}, RULES) == 8


def test_configured_resources_come_first() -> None:
    config = OperatorConfig.model_validate({"gpuResources": [
        {"pattern": "example.com/a100-*", "gpusPerUnit": 0.5},
        {"pattern": "nvidia.com/gpu.shared", "gpusPerUnit": 0.125},
    ]})  # fmt: skip
    rules = rules_of(config)
    assert gpu_use({"example.com/a100-slice": 2}, 0, rules).gpus == 1
    assert gpu_use({"nvidia.com/gpu.shared": 1}, 0, rules).gpus == 0.125
    assert rules_of(None) == DEFAULT_GPU_RESOURCES
