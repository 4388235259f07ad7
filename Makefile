# One entry point for people and CI. Every target bootstraps .venv from the pinned requirements.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

NODE_STAMP := node_modules/.installed-stamp

.PHONY: sysdeps venv node_modules test demo bench bench-long clean mpy-check

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

# npm packages (pinned in package-lock.json): the 32-bit MicroPython the memory bench runs on.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: run  apt-get install -y nodejs npm  (make sysdeps does it as root)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

node_modules: $(NODE_STAMP)

# The Debian packages the tests need (mosquitto, chromium, fonts, nodejs): installed when run as root,
# otherwise the one command to run is printed.
sysdeps:
	$(PY) -m host_tools.sysdeps

# Every test, three at a time: this machine has 2 cores, and a third worker fills the time the
# others wait on wall clocks (a watchdog, a broker, a browser, a subprocess starting): 5 min 12 s
# against 6 min 9 s with -n 2 on the same tree.
test: sysdeps venv node_modules
	$(BIN)/python -m host_tools.testtime -q -n 3 --timeout=900 tests

demo: venv
	$(BIN)/meterkit demo

bench: venv node_modules
	$(BIN)/python -m host_tools.bench

bench-long: venv
	$(BIN)/python -m host_tools.bench --long

mpy-check: venv
	$(BIN)/python -m host_tools.build.mpycheck

clean:
	rm -rf build .pytest_cache
