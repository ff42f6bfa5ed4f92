# The README's two commands: `make demo` (the main job) and `make test`.
.PHONY: setup demo test check lint stack-up stack-down bench

VENV := .venv/bin

setup:
	bash deploy/local/setup.sh

# Local Kafka + Redis, a worker, and a demo that prints labelled products,
# enriched orders and a dead-lettered event.
demo: setup
	$(VENV)/vitrine stack up
	$(VENV)/vitrine demo

# Lint, types, then every test suite: unit, integration (real Kafka + Redis
# started by the test session) and reliability.
test: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/pytest

stack-up: setup
	$(VENV)/vitrine stack up

stack-down:
	$(VENV)/vitrine stack down

bench: setup
	$(VENV)/vitrine stack up
	$(VENV)/vitrine bench inference
	$(VENV)/vitrine bench pipeline
