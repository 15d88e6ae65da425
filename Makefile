# The two entry points of the README. Both set up .venv on first use (CPU torch where there is no GPU).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint setup

demo:
	@bash scripts/setup-env.sh $(VENV)
	$(BIN)/sana-video generate "a red circle moving right"

test:
	@bash scripts/setup-env.sh $(VENV) test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
