# Entry points for people and CI. `make demo` starts the marketplace with demo data;
# `make test` runs every test. Both install what they need first (Debian, as root).

PYTHON ?= python3
# `make demo HOST=0.0.0.0 PORT=8081` to listen elsewhere; the demo store lives in var/demo.
HOST ?= 127.0.0.1
PORT ?= 8080
DEMO_DIR ?= var/demo

.PHONY: install test lint demo bench

install:
	scripts/install-deps

test: install
	$(PYTHON) -m pytest -q

lint:
	ruff check .

demo: install
	$(PYTHON) -m marketplace.cli demo --host $(HOST) --port $(PORT) --data-dir $(DEMO_DIR)

bench: install
	$(PYTHON) bench/digests.py
