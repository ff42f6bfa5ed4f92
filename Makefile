# The README's two commands: `make demo` (the main job) and `make test`.
.PHONY: setup demo test stack-up stack-down bench train-grocery docs compose-up compose-test compose-down

VENV := .venv/bin

setup:
	bash deploy/local/setup.sh

# Local Kafka + Redis, a worker, and a demo that prints labelled products,
# enriched orders and a dead-lettered event.
demo: setup
	$(VENV)/vitrine stack up
	$(VENV)/vitrine demo
	@echo "Review the flagged listings: $(VENV)/vitrine console --dev, then open http://127.0.0.1:8070/ (docs/REVIEW.md)"

# Lint, types, then every test suite: unit, integration (real Kafka + Redis
# started by the test session) and reliability. Most integration tests wait on
# Kafka, so 4 test processes (one test file each at a time, so a module's private
# stack starts once) finish sooner than 2 even on 2 cores; one BLAS thread each
# keeps them from oversubscribing the cores. `make test PYTEST_WORKERS=0` runs
# them in one process.
PYTEST_WORKERS ?= 4
test: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
		$(VENV)/pytest -n $(PYTEST_WORKERS) --dist loadfile

stack-up: setup
	$(VENV)/vitrine stack up

stack-down:
	$(VENV)/vitrine stack down

# The docker-compose stack (deploy/docker-compose.yml) with Docker or Podman,
# whichever is present (deploy/compose/stack.sh): images built, services up and
# healthy; compose-test also runs tests/compose against it and tears it down.
# Podman without a registry builds Kafka, Redis and Prometheus from Debian
# packages (no Grafana). compose-test uses its own project and host ports, so
# it runs beside a stack started with compose-up or `vitrine stack up`.
COMPOSE := PYTHON=$(VENV)/python bash deploy/compose/stack.sh
COMPOSE_TEST_ENV := STACK_PROJECT=vitrine-test KAFKA_HOST_PORT=19094 \
	REDIS_HOST_PORT=16380 WORKER_HOST_PORT=16066 PROMETHEUS_HOST_PORT=19090 GRAFANA_HOST_PORT=13000
compose-up: setup
	$(COMPOSE) up

compose-test: setup
	$(COMPOSE_TEST_ENV) $(COMPOSE) test

compose-down:
	$(COMPOSE) down

bench: setup
	$(VENV)/vitrine stack up
	$(VENV)/vitrine bench inference
	$(VENV)/vitrine bench pipeline

# Rebuild everything the worker serves of the shipped default model
# (inference/serving/models/grocery-store) from the Grocery Store data beside the
# repo: train (PyTorch in its own venv, about an hour on 2 CPU cores), INT8 graph,
# search descriptor, review thresholds, evaluation (docs/model-build) and the model
# card (docs/MODEL.md). Resumable: a rerun skips the steps done, and training
# resumes from its checkpoints (~/.cache/vitrine/checkpoints/grocery-store).
GROCERY := ../shared/datasets/grocery-store
train-grocery:
	test -x .venv-train/bin/vitrine || { python3 -m venv .venv-train && .venv-train/bin/pip install -q -e '.[train-torch]'; }
	.venv-train/bin/vitrine build-model $(GROCERY)/train.txt --val $(GROCERY)/val.txt \
		--recipe full --open-set-classes 10 --name grocery-store \
		--categories inference/serving/data/grocery_categories.csv \
		--checkpoint-dir $(HOME)/.cache/vitrine/checkpoints/grocery-store \
		--out inference/serving/models/grocery-store \
		--reports docs/model-build --card docs/MODEL.md --quiet

# The docs site (docs/, mkdocs.yml) into site/, warnings as errors; MkDocs and
# its theme are the `docs` extra, added to .venv the first time.
docs: setup
	test -x $(VENV)/mkdocs || $(VENV)/pip install -q -e '.[docs]'
	$(VENV)/mkdocs build --strict --site-dir site
