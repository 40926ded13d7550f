# Entry points for people and CI. `make demo` starts the marketplace with demo data;
# `make test` runs every test. Both install what they need first (Debian, as root).

PYTHON ?= python3

.PHONY: install test lint demo bench

install:
	scripts/install-deps

test: install
	$(PYTHON) -m pytest -q

lint:
	ruff check .

demo: install
	stratus-build-metadata --help
	stratus-sign-metadata --help
	stratus-validate-metadata --help

bench: install
	$(PYTHON) bench/digests.py
