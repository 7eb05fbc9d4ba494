# The newcomer's two commands: `make demo` and `make test`. Both create .venv first (pip only, no ROS install).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
OUT ?= demo_out

.PHONY: venv test test-fast demo bench clean help

help:
	@echo "make demo   - create .venv (pip only) and run the main job end to end"
	@echo "make test   - create .venv and run the test suite"
	@echo "make bench  - create .venv-bench (adds mergekit) and run bench/merge_bench.py"
	@echo "make clean  - remove .venv, .venv-bench and demo output"

venv: $(STAMP) $(SYSTEM_STAMP)

# Debian packages (e.g. Mesa for offscreen MuJoCo rendering); installs only those missing.
$(SYSTEM_STAMP): apt-packages.txt | $(STAMP)
	@missing=$$(grep -v '^#' apt-packages.txt | xargs -r -n1 sh -c 'dpkg -s "$$0" >/dev/null 2>&1 || echo "$$0"'); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@touch $@

$(STAMP): requirements.txt setup.py setup.cfg package.xml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

test: venv
	$(BIN)/python -m pytest

demo: venv
	$(BIN)/python -m retain_ros.demo --out $(OUT)

bench: venv
	@test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q -r requirements.txt -r bench/requirements.txt
	.venv-bench/bin/python -m pip install -q --no-deps -e .
	.venv-bench/bin/python bench/merge_bench.py

clean:
	rm -rf $(VENV) .venv-bench $(OUT)
