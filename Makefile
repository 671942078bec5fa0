# Every developer task is one target here; CI runs `make test`, the same command as you.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin

.PHONY: help setup demo test lint format typecheck bench soak migrate clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## install PostgreSQL, Mosquitto and the .venv (idempotent)
	bash scripts/setup

# The checks need the .venv; a fresh clone gets it from scripts/setup on first use.
$(BIN)/python:
	bash scripts/setup

demo: ## set everything up and run the service with eight simulated vehicles
	bash scripts/demo

test: $(BIN)/python  ## every check: format, lint, types, then the test suite
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(BIN)/python  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/python  ## apply ruff's formatting and safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(BIN)/python  ## mypy over telemetry, api and simulators
	$(BIN)/mypy

bench: $(BIN)/python  ## ingest flood beside a bare MQTT client: rate, ratio, CPU, latency (~1.5 min)
	$(BIN)/python -m benchmarks.ingest

soak: $(BIN)/python  ## 10 minutes at 5,000 readings/s: memory and latency every 30 s
	$(BIN)/python -m benchmarks.soak --rate 5000 --minutes 10

migrate: $(BIN)/python  ## create the database if needed and apply migrations
	$(BIN)/telemetry migrate

clean:  ## remove caches and build output (keeps .venv and var/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
