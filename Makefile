# One entry point for people and CI. Every target bootstraps .venv from the pinned requirements.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test demo bench bench-long clean mpy-check

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

# Fast firmware + host tests, then the simulated-world tests. -n 2: this machine has 2 cores.
test: venv
	@command -v chromium >/dev/null 2>&1 || { echo "chromium is missing (the agency's browser tests): apt-get install -y chromium fonts-noto-core"; exit 1; }
	$(BIN)/python -m pytest -q -n 2 --timeout=900 tests

demo: venv
	$(BIN)/meterkit demo

bench: venv
	$(BIN)/python -m host_tools.bench

bench-long: venv
	$(BIN)/python -m host_tools.bench --long

mpy-check: venv
	$(BIN)/python -m host_tools.build.mpycheck

clean:
	rm -rf build .pytest_cache
