# The newcomer's two commands: `make demo` and `make test`. Both create .venv first (pip only, no ROS install).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
OUT ?= demo_out

.PHONY: venv test test-fast demo bench clean help models

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
	$(BIN)/python -m retain_ros.ros.demo --out $(OUT) $(DEMO_ARGS)

bench: venv
	@test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q -r requirements.txt -r bench/requirements.txt
	.venv-bench/bin/python -m pip install -q --no-deps -e .
	.venv-bench/bin/python bench/merge_bench.py

clean:
	rm -rf $(VENV) .venv-bench $(OUT)

# Regenerate the embedded reference-VLA checkpoints (retain_ros/models/) from nothing: collect expert demos in the
# simulator, pretrain the generalist, then task-finetune and co-finetune it on the target task. About 15 min of
# collection and 15-45 min of training on 2 cores, depending on what else runs.
MODELS_WORK ?= build/models_work
MODELS_OUT ?= retain_ros/models
MODELS_TARGET ?= push_red_to_purple
MODELS_SIM = $(BIN)/retain-sim collect --image-size 64 --overwrite
MODELS_PRE = $(MODELS_WORK)/data/pre_id $(foreach v,position appearance viewpoint distractors,$(MODELS_WORK)/data/pre_$(v))
models: venv
	$(MODELS_SIM) --tasks generalist --variation id --episodes 5 --seed 0 --out $(MODELS_WORK)/data/pre_id
	$(MODELS_SIM) --tasks $(MODELS_TARGET) --variation id --episodes 50 --seed 0 --out $(MODELS_WORK)/data/target_id
	for v in position appearance viewpoint distractors; do \
		$(MODELS_SIM) --tasks generalist --variation $$v --episodes 2 --seed 100 --out $(MODELS_WORK)/data/pre_$$v \
		|| exit 1; done
	$(BIN)/retain-train pretrain --data $(MODELS_PRE) --steps 3000 --seed 0 --out $(MODELS_OUT)/base --overwrite
	$(BIN)/retain-train finetune --init $(MODELS_OUT)/base --data $(MODELS_WORK)/data/target_id --steps 2000 \
		--lr 2e-4 --seed 1 --out $(MODELS_OUT)/task_ft --overwrite
	$(BIN)/retain-train cofinetune --init $(MODELS_OUT)/base --data $(MODELS_WORK)/data/target_id \
		--pretrain-data $(MODELS_PRE) --target-fraction 0.2 --steps 2000 --lr 2e-4 --seed 2 --out $(MODELS_OUT)/co_ft --overwrite
