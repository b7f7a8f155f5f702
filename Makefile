# The two commands a newcomer needs are `make run` and `make test` (see README).
PY ?= .venv/bin/python
CLUSTER ?= local

.PHONY: bootstrap run test lint unit integration crd helm lock sbom image cluster-up cluster-down cluster-status

bootstrap:
	@hack/bootstrap.sh

# The live demo (README, "Demo"): the local cluster with fake GPU pools, replayed
# load and the operator, on screen; q stops everything it started. With
# CLUSTER=current, only the operator, against the current kube context.
run: bootstrap
ifeq ($(CLUSTER),current)
	$(PY) -m gpufinops run
else
	$(PY) -m gpufinops demo
endif

# Everything CI checks: static checks, then unit and integration tests.
test: bootstrap lint
	$(PY) -m pytest

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	.venv/bin/lint-imports

unit: bootstrap
	$(PY) -m pytest -m "not integration"

integration: bootstrap
	$(PY) -m pytest -m integration

# After an API change: the CRD, its copy in the chart, and the generated reference.
crd: bootstrap
	$(PY) -m gpufinops crd > crds/aiworkloads.gpufinops.dev.yaml
	cp crds/*.yaml helm/gpufinops/files/crds/
	$(PY) -m gpufinops reference > docs/reference.md
	$(PY) -m gpufinops reference --cli > docs/cli.md

helm:
	hack/build-helm.sh

lock:
	hack/lock-requirements.sh

# The operator image without a Docker engine: Debian from debootstrap, the lock,
# buildah (needs root). Output in build/image: rootfs, OCI archive, SBOM.
image: bootstrap
	hack/build-image.sh

# CycloneDX SBOM of the image's Python packages (the runtime lock).
sbom: bootstrap
	$(PY) hack/sbom.py requirements.lock > sbom.cdx.json

cluster-up: bootstrap
	$(PY) -m gpufinops.localcluster up

cluster-down:
	$(PY) -m gpufinops.localcluster down

cluster-status:
	$(PY) -m gpufinops.localcluster status
