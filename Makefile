# robustness-gate: `make demo` shows the main job end to end, `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Work directory of `make cluster-up` / `make cluster-down`; extra `up` flags, e.g. CLUSTER_ARGS=--no-rollouts.
CLUSTER_DIR ?= .cluster
CLUSTER_ARGS ?=

.PHONY: all help deps venv lint check typecheck crds crds-check unit integration test demo clean \
	cluster-build cluster-up cluster-down cluster-status k8s e2e chart-lint bench

all: test

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

deps: ## Debian packages the tests need (Prometheus, VictoriaMetrics)
	@bash hack/install-deps.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: venv ## ruff (lint and format), the import-linter layers, mypy
	$(BIN)/ruff check operator tests hack bench
	$(BIN)/ruff format --check operator tests hack bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy operator/robustness_gate bench/detection bench/scale hack
	MYPYPATH=operator:.:tests/unit $(BIN)/mypy --explicit-package-bases tests/unit
	MYPYPATH=operator:.:tests/integration $(BIN)/mypy --explicit-package-bases tests/integration
	MYPYPATH=operator:.:tests/k8s $(BIN)/mypy --explicit-package-bases tests/k8s tests/conftest.py
	MYPYPATH=operator:.:tests/e2e $(BIN)/mypy --explicit-package-bases tests/e2e

crds: venv
	$(BIN)/robustness-gate crds

crds-check: venv
	$(BIN)/robustness-gate crds --check

unit: venv ## the pure unit tier
	$(BIN)/python -m pytest tests/unit -q

# The everyday loop: no cluster, no Prometheus.
check: lint crds-check unit ## lint, types, CRD in sync, unit tests

integration: venv deps ## the tier against a real Prometheus
	$(BIN)/python -m pytest tests/integration -q

test: deps venv lint crds-check cluster-build chart-lint ## everything CI runs
	$(BIN)/python -m pytest tests/unit tests/integration tests/k8s tests/e2e -q

# Local cluster binaries (etcd, kube-*, kwok, rollouts-controller, helm) from the Go module proxy, cached in
# ~/.cache/robustness-gate; a no-op when they are all built. See docs/development.md.
cluster-build: ## build the local cluster's binaries (cached)
	bash hack/cluster/build.sh

# A local cluster whose processes outlive make; `make cluster-down` stops it.
cluster-up: venv cluster-build ## a local cluster that outlives make
	$(BIN)/python -m hack.localcluster up --dir $(CLUSTER_DIR) $(CLUSTER_ARGS)

cluster-down: venv ## stop it
	$(BIN)/python -m hack.localcluster down --dir $(CLUSTER_DIR)

cluster-status: venv
	$(BIN)/python -m hack.localcluster status --dir $(CLUSTER_DIR)

k8s: venv cluster-build ## the tier against a real apiserver
	$(BIN)/python -m pytest tests/k8s -q

e2e: venv deps cluster-build ## the full local cluster with Argo Rollouts
	$(BIN)/python -m pytest tests/e2e -q

demo: deps venv cluster-build ## set up everything, then a bad and a good release end to end
	$(BIN)/python -m hack.demo

# Benchmarks: detection power against peers' rules (about 20 min on 2 cores) and operator scale on the local
# cluster (about 16 min); they regenerate docs/benchmarks.md and docs/benchmarks-detection.png.
bench: venv deps cluster-build ## regenerate docs/benchmarks.md
	$(BIN)/python -m bench.detection
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# `helm lint --strict` of the chart, cluster-wide and namespaced (helm comes from `make cluster-build`).
chart-lint: cluster-build ## helm lint --strict of the chart
	@helm="$${TESTBIN:-$$HOME/.cache/robustness-gate/testbin}/bin/helm"; \
	"$$helm" lint --strict charts/robustness-gate && \
	"$$helm" lint --strict charts/robustness-gate --set-json 'watchNamespaces=["team-a"]' --set-json 'rbac.secretNames=["prom-auth"]'
