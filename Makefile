# Entry points for people and CI. `make demo` starts the marketplace with demo data;
# `make test` runs every test. Both install what they need first (Debian, as root), but only
# once: the stamp below is renewed when pyproject.toml or an install script changes, and
# `make install` installs again whatever the stamp says. Developers with a virtualenv run
# pytest directly (README, "Every day").

PYTHON ?= python3
# `make demo HOST=0.0.0.0 PORT=8081` to listen elsewhere; the demo store lives in var/demo.
HOST ?= 127.0.0.1
PORT ?= 8080
DEMO_DIR ?= var/demo
INSTALLED := var/installed.stamp

.PHONY: install test lint demo bench

$(INSTALLED): pyproject.toml scripts/install-deps $(wildcard scripts/install.d/*.sh)
	scripts/install-deps
	mkdir -p $(@D) && touch $@

install:
	rm -f $(INSTALLED)
	$(MAKE) --no-print-directory $(INSTALLED)

test: $(INSTALLED)
	$(PYTHON) -m pytest -q

lint:
	ruff check .

demo: $(INSTALLED)
	$(PYTHON) -m marketplace demo --host $(HOST) --port $(PORT) --data-dir $(DEMO_DIR)

bench: $(INSTALLED)
	$(PYTHON) bench/digests.py
