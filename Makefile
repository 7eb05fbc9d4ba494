# The newcomer's two commands: `make demo` and `make test`. Both create .venv first (pip only, no ROS install).
# PYTHON and VENV can be given on the command line: `make demo PYTHON=python3.12 VENV=.venv-py312` (.ci/run does).
PYTHON ?= python3
VENV := .venv
# Where pip takes torch from. Empty (the default): PyPI, where `torch==2.13.0` is the CUDA build on every Python; it
# runs on the CPU too and brings triton and the nvidia-* wheels (about 3 GB to download, 5 GB in the venv).
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes PyTorch's CPU-only build instead (about 0.2 GB); it
# applies when the venv is made (make clean first). Either way `make venv` prints which build it installed.
TORCH_INDEX_URL ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
MSGS_STAMP := $(VENV)/.retain_ros_msgs
OUT ?= demo_out

.PHONY: venv test test-fast demo bench clean help models colcon-env check-workspace

help:
	@echo "make demo   - create .venv (pip only) and run the main job end to end"
	@echo "make test   - create .venv and run the test suite"
	@echo "make bench  - create .venv-bench (adds mergekit) and run bench/merge_bench.py"
	@echo "make clean  - remove .venv, .venv-py* (.ci/run's), .venv-bench, .venv-lerobot, .venv-colcon and demo output"
	@echo "make check-workspace - a plain colcon build of a workspace holding this repository (.venv as the ROS install)"
	@echo "make models - regenerate the embedded checkpoints from nothing (about 2 h on 2 cores; data in build/)"
	@echo "make study-vgps - value-guided steering in closed loop: base and merge with and without V-GPS (about 1 h)"
	@echo "make models-report - held-out demos, offline fit, alpha path, replay and retain-eval sim (about 45 min)"
	@echo "make lerobot-env  - create .venv-lerobot (Python 3.12, LeRobot 0.6.1) for pi0 / pi0.5 / SmolVLA checkpoints"
	@echo "make test-lerobot - create .venv-lerobot and run test/lerobot_backend (tiny LeRobot models, offline)"
	@echo "make openpi-env   - create .venv-openpi (JAX CPU, orbax, openpi-client): retain-merge on openpi checkpoints"
	@echo "make test-openpi  - create .venv-openpi and run test/openpi_backend (orbax merges, openpi's own client)"

venv: $(STAMP) $(SYSTEM_STAMP) $(MSGS_STAMP)

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
	$(if $(TORCH_INDEX_URL),$(BIN)/python -m pip install -q --index-url $(TORCH_INDEX_URL) \
		$$(grep "^torch==" requirements.txt))
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@$(BIN)/python -c 'import importlib.metadata as m, importlib.util as u; v = m.version("torch"); print( \
		"$(VENV): torch", v, "(CPU-only build)" if "+cpu" in v else "(CUDA build with triton; runs on the CPU too)" \
		if u.find_spec("triton") else "")'
	@touch $@

# The package's messages (msg/: retain_ros_msgs), built with CMake from the ROS 2 wheels and installed into .venv.
# The build folder lies inside the venv it serves: venvs of other Pythons never share (or wipe) one CMake cache.
$(MSGS_STAMP): msg/ActionChunk.msg msg/GroupAlpha.msg msg/CMakeLists.txt msg/package.xml msg/install_into_venv.sh \
		msg/patch_wheel_cmake.sh requirements-msgs.txt | $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/python -m pip install -q -r requirements-msgs.txt
	msg/install_into_venv.sh $(VENV) $(VENV)/build/retain_ros_msgs
	@touch $@

test: venv colcon-env
	$(BIN)/python -m pytest

demo: venv
	$(BIN)/python -m retain_ros.demo --out $(OUT) $(DEMO_ARGS)

bench: venv
	@test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q -r requirements.txt -r bench/requirements.txt
	.venv-bench/bin/python -m pip install -q --no-deps -e .
	.venv-bench/bin/python bench/merge_bench.py

clean:
	rm -rf $(VENV) .venv-py3* .venv-bench .venv-lerobot .venv-openpi $(COLCON_VENV) $(OUT)

# colcon in its own environment (requirements-colcon.txt says why), for the workspace check: the repository in
# ws/src/retain_ros, a plain `colcon build` with .venv standing in for /opt/ros/<distro>, then the node, its executables
# and the messages from install/ (test/workspace/colcon_build_check.sh; `make test` runs it too). WS=dir keeps the
# workspace there.
COLCON_VENV := .venv-colcon
COLCON_STAMP := $(COLCON_VENV)/.installed

colcon-env: $(COLCON_STAMP)

$(COLCON_STAMP): requirements-colcon.txt
	@test -x $(COLCON_VENV)/bin/python || $(PYTHON) -m venv $(COLCON_VENV)
	$(COLCON_VENV)/bin/python -m pip install -q -r requirements-colcon.txt
	@touch $@

check-workspace: venv colcon-env
	COLCON=$(COLCON_VENV)/bin/colcon test/workspace/colcon_build_check.sh $(VENV) $(WS)

# Regenerate the embedded reference-VLA checkpoints (retain_ros/models/) from nothing, deterministically:
# `models-data` collects expert demos in the simulator (generalist suite in `id`, with and without DART noise, and in
# every OOD family; 50 clean and 50 DART-noise `id` demos of the first target, 100 and 100 of the second), then `models`
# runs four stages, each resumable (a stamp in MODELS_WORK marks it done; `rm -rf build/models_work` starts over):
# pretrain the generalist; task-finetune and co-finetune it on the first target's clean and noisy demos; the value
# function of value-guided steering (below); the second skill: co-finetune the first skill's merge (co-FT at
# MODELS_SKILL1_ALPHA) on the second target's clean and noisy demos with the pretraining data and the first target's
# demos replayed (co_ft2, paper Eq. 4), and the base on it too (co_ft2_single, for the single-skill comparison). Each
# stage's two jobs run side by side, one core each.
# Times: docs/policy.md and docs/steering.md.
MODELS_WORK ?= build/models_work
MODELS_OUT ?= retain_ros/models
MODELS_TARGET ?= push_red_to_purple
MODELS_TARGET2 ?= place_red_and_blue_on_yellow
MODELS_SKILL1_ALPHA ?= 0.95
MODELS_PRETRAIN_STEPS ?= 30000
MODELS_FINETUNE_STEPS ?= 10000
# co-FT: half of each batch from the target for twice task-FT's steps, so it sees as many target samples as task-FT
# (docs/policy.md, "co-FT with task-FT's target exposure"); both learn the target from its clean and DART-noise demos
MODELS_COFINETUNE_STEPS ?= 20000
# task-FT: the target's demos alone (every task-FT of the project: the embedded one and the studies')
MODELS_FINETUNE = $(MODELS_TRAIN) finetune --steps $(MODELS_FINETUNE_STEPS) --lr 5e-4
MODELS_COFINETUNE = $(MODELS_TRAIN) cofinetune --target-fraction 0.5 --steps $(MODELS_COFINETUNE_STEPS) --lr 5e-4
# the embedded task-FT's command less its output, and co-FT's less its replay sets and seed (the studies' variants
# change only those, or the target's data)
MODELS_TASK_FT = $(MODELS_FINETUNE) --init $(MODELS_OUT)/base --data $(MODELS_TARGET_DATA) --seed 1
MODELS_CO_FT = $(MODELS_COFINETUNE) --init $(MODELS_OUT)/base --data $(MODELS_TARGET_DATA)
MODELS_SIM = $(BIN)/retain-sim collect --image-size 64 --overwrite
MODELS_DATA = $(MODELS_WORK)/data
MODELS_OOD = position appearance viewpoint distractors
MODELS_PRE = $(MODELS_DATA)/pre_id $(MODELS_DATA)/pre_id_noise $(foreach v,$(MODELS_OOD),$(MODELS_DATA)/pre_$(v)) \
	$(MODELS_DATA)/pre_id_noise2
MODELS_TRAIN = $(BIN)/retain-train

# each stage depends on the sets it reads, so adding a set reruns only the stages that use it
MODELS_PRE_FILES = $(foreach d,$(MODELS_PRE),$(d)/index.json)
MODELS_TARGET2_DATA = $(MODELS_DATA)/target2_id $(MODELS_DATA)/target2_id_noise $(MODELS_DATA)/target2_id_more \
	$(MODELS_DATA)/target2_id_noise_more
MODELS_TARGET2_FILES = $(foreach d,$(MODELS_TARGET2_DATA),$(d)/index.json)
MODELS_TARGET_DATA = $(MODELS_DATA)/target_id $(MODELS_DATA)/target_id_noise
MODELS_DATA_FILES = $(MODELS_PRE_FILES) $(foreach d,$(MODELS_TARGET_DATA),$(d)/index.json) $(MODELS_TARGET2_FILES)
.PHONY: models-data
models-data: $(MODELS_DATA_FILES)

$(MODELS_DATA)/pre_id/index.json: | venv
	$(MODELS_SIM) --tasks generalist --variation id --episodes 20 --seed 0 --out $(@D)
$(MODELS_DATA)/pre_id_noise/index.json: | venv
	$(MODELS_SIM) --tasks generalist --variation id --episodes 10 --seed 50 --noise 0.05 --out $(@D)
$(MODELS_DATA)/pre_id_noise2/index.json: | venv
	$(MODELS_SIM) --tasks generalist --variation id --episodes 20 --seed 70 --noise 0.05 --out $(@D)
$(MODELS_DATA)/pre_%/index.json: | venv
	$(MODELS_SIM) --tasks generalist --variation $* --episodes 8 --seed 100 --out $(@D)
$(MODELS_DATA)/target_id/index.json: | venv
	$(MODELS_SIM) --tasks $(MODELS_TARGET) --variation id --episodes 50 --seed 0 --out $(@D)
$(MODELS_DATA)/target_id_noise/index.json: | venv
	$(MODELS_SIM) --tasks $(MODELS_TARGET) --variation id --episodes 50 --seed 50 --noise 0.05 --out $(@D)
$(MODELS_DATA)/target2_id/index.json: | venv
	$(MODELS_SIM) --tasks $(MODELS_TARGET2) --variation id --episodes 50 --seed 0 --out $(@D)
$(MODELS_DATA)/target2_id_noise/index.json: | venv
	$(MODELS_SIM) --tasks $(MODELS_TARGET2) --variation id --episodes 50 --seed 50 --noise 0.05 --out $(@D)
$(MODELS_DATA)/target2_id_more/index.json: | venv
	$(MODELS_SIM) --tasks $(MODELS_TARGET2) --variation id --episodes 50 --seed 100 --out $(@D)
$(MODELS_DATA)/target2_id_noise_more/index.json: | venv
	$(MODELS_SIM) --tasks $(MODELS_TARGET2) --variation id --episodes 50 --seed 150 --noise 0.05 --out $(@D)

.PHONY: models
models: $(MODELS_WORK)/skill2.done $(MODELS_WORK)/value.done

$(MODELS_WORK)/pretrain.done: $(MODELS_PRE_FILES)
	$(MODELS_TRAIN) pretrain --data $(MODELS_PRE) --steps $(MODELS_PRETRAIN_STEPS) --lr 1e-3 --seed 0 \
		--out $(MODELS_OUT)/base --overwrite --quiet
	touch $@

$(MODELS_WORK)/finetune.done: $(MODELS_WORK)/pretrain.done $(foreach d,$(MODELS_TARGET_DATA),$(d)/index.json)
	$(MODELS_TASK_FT) --out $(MODELS_OUT)/task_ft --overwrite --quiet & task_ft=$$!; \
	$(MODELS_CO_FT) --pretrain-data $(MODELS_PRE) --seed 2 --out $(MODELS_OUT)/co_ft --overwrite --quiet; co_ft=$$?; \
		wait $$task_ft && test $$co_ft = 0
	touch $@

MODELS_COFINETUNE2 = $(MODELS_COFINETUNE) --data $(MODELS_TARGET2_DATA) --overwrite --quiet
# the first skill's merge the second skill is co-finetuned from, and co_ft2's command less its output (the studies
# below run both at other alphas and steps)
MODELS_SKILL1_MERGE = $(MODELS_WORK)/skill1_merge
MODELS_MERGE_SKILL1 = $(BIN)/retain-merge $(MODELS_OUT)/base $(MODELS_OUT)/co_ft --alpha $(MODELS_SKILL1_ALPHA) \
	--groups reference --out $(MODELS_SKILL1_MERGE) --force -q
MODELS_CO_FT2_REPLAY = $(MODELS_PRE) $(MODELS_DATA)/target_id
MODELS_CO_FT2_CHAINED = $(MODELS_COFINETUNE2) --init $(MODELS_SKILL1_MERGE) --pretrain-data $(MODELS_CO_FT2_REPLAY) \
	--seed 5
MODELS_CO_FT2_SINGLE = $(MODELS_COFINETUNE2) --init $(MODELS_OUT)/base --pretrain-data $(MODELS_PRE) --seed 6
$(MODELS_WORK)/skill2.done: $(MODELS_WORK)/finetune.done $(MODELS_TARGET2_FILES)
	$(MODELS_MERGE_SKILL1)
	$(MODELS_CO_FT2_CHAINED) --out $(MODELS_OUT)/co_ft2 & chained=$$!; \
	$(MODELS_CO_FT2_SINGLE) --out $(MODELS_OUT)/co_ft2_single; single=$$?; wait $$chained && test $$single = 0
	touch $@

# The value function of value-guided steering (V-GPS, docs/steering.md): rollouts with outcomes, each chunk one of
# MODELS_VALUE_SAMPLES samples at noise MODELS_VALUE_NOISE chosen at random (the base on the generalist suite and the
# target; task-FT's merge at 0.9 on the target in id and every OOD family, and a few generalist episodes), seeds 20000+
# that no training or evaluation uses; then value learning on them (`retain-train value`: Monte-Carlo returns,
# docs/steering.md). Both collections run side by side; about 45 min in all on 2 cores (23 + 20).
MODELS_VALUE_SAMPLES ?= 10
MODELS_VALUE_NOISE ?= 0.5
MODELS_VALUE_STEPS ?= 3000
MODELS_ROLLOUTS = $(MODELS_WORK)/rollouts
MODELS_COLLECT = $(BIN)/retain-eval sim --steering random --steering-samples $(MODELS_VALUE_SAMPLES) \
	--steering-noise $(MODELS_VALUE_NOISE) --base $(MODELS_OUT)/base --task-ft $(MODELS_OUT)/task_ft \
	--co-ft $(MODELS_OUT)/co_ft --target $(MODELS_TARGET) -q
$(MODELS_WORK)/value.done: $(MODELS_WORK)/finetune.done
	rm -rf $(MODELS_ROLLOUTS)
	$(MODELS_COLLECT) --rows '^base \+ random$$' --episodes 10 --generalist-episodes 30 --ood '' --seed 20000 \
		--record $(MODELS_ROLLOUTS)/base --out $(MODELS_ROLLOUTS)/base_report & base=$$!; \
	$(MODELS_COLLECT) --rows '^RETAIN task-FT a=0.90 \+ random$$' --alpha 0.9 --episodes 8 --generalist-episodes 3 \
		--seed 21000 --record $(MODELS_ROLLOUTS)/merge --out $(MODELS_ROLLOUTS)/merge_report; merge=$$?; \
		wait $$base && test $$merge = 0
	$(MODELS_TRAIN) value --data $(MODELS_ROLLOUTS)/base $(MODELS_ROLLOUTS)/merge --steps $(MODELS_VALUE_STEPS) \
		--seed 0 --out $(MODELS_OUT)/value --overwrite --quiet
	touch $@

# What docs/policy.md reports about the embedded checkpoints: held-out demos (seeds no model trained on), offline
# imitation error on training and held-out episodes, the loss along the alpha path, the replay error of every alpha on
# held-out OOD bags, and the closed-loop comparison (`retain-eval sim`, seeds from 1000). About 40 min on 2 cores.
MODELS_REPORT ?= build/models_report
MODELS_HELDOUT = $(MODELS_WORK)/heldout
MODELS_ALPHAS = 0,0.25,0.5,0.75,0.9,1
.PHONY: models-report models-report-offline
$(MODELS_HELDOUT)/target_%/index.json: | venv
	$(MODELS_SIM) --tasks $(MODELS_TARGET) --variation $* --episodes 6 --seed 500 --out $(@D) $(if $(filter id,$*),,--bag)
$(MODELS_HELDOUT)/pre_id/index.json: | venv
	$(MODELS_SIM) --tasks generalist --variation id --episodes 3 --seed 500 --out $(@D)
models-report-offline: $(foreach v,id $(MODELS_OOD),$(MODELS_HELDOUT)/target_$(v)/index.json) \
		$(MODELS_HELDOUT)/pre_id/index.json
	mkdir -p $(MODELS_REPORT)
	for m in base task_ft co_ft; do \
		printf "$$m target train: "; \
		$(MODELS_TRAIN) error --init $(MODELS_OUT)/$$m --data $(MODELS_DATA)/target_id --max-episodes 10 || exit 1; \
		printf "$$m target held-out id: "; \
		$(MODELS_TRAIN) error --init $(MODELS_OUT)/$$m --data $(MODELS_HELDOUT)/target_id || exit 1; \
		printf "$$m target held-out OOD: "; \
		$(MODELS_TRAIN) error --init $(MODELS_OUT)/$$m \
			--data $(foreach v,$(MODELS_OOD),$(MODELS_HELDOUT)/target_$(v)) || exit 1; \
		printf "$$m generalist held-out id: "; \
		$(MODELS_TRAIN) error --init $(MODELS_OUT)/$$m --data $(MODELS_HELDOUT)/pre_id || exit 1; \
	done > $(MODELS_REPORT)/fit_error.txt && cat $(MODELS_REPORT)/fit_error.txt
	$(MODELS_TRAIN) path --base $(MODELS_OUT)/base --finetuned $(MODELS_OUT)/task_ft $(MODELS_OUT)/co_ft \
		--data $(MODELS_DATA)/target_id $(MODELS_DATA)/pre_id --alphas $(MODELS_ALPHAS) \
		--plot $(MODELS_REPORT)/alpha_path.png > $(MODELS_REPORT)/alpha_path.txt && cat $(MODELS_REPORT)/alpha_path.txt
	for m in task_ft co_ft; do $(BIN)/retain-eval bag $(foreach v,$(MODELS_OOD),$(MODELS_HELDOUT)/target_$(v)/bags/*) \
		--base $(MODELS_OUT)/base --finetuned $(MODELS_OUT)/$$m --alpha $(MODELS_ALPHAS) --target action --every 2 \
		--out $(MODELS_REPORT)/replay_ood_$$m -q || exit 1; done

models-report: models-report-offline
	$(BIN)/retain-eval sim --workers 2 --out $(MODELS_REPORT)/sim

# ---- RETAIN's claims at a second pretraining scale (docs/policy.md, "Pretraining scale") ------------------------------
# Scale 1 is the embedded base (815 episodes, 30k steps; docs/policy.md's scaling table was measured with the earlier
# base, 615 episodes without `pre_id_noise2`). Scale 2 adds 920 generalist episodes (30 more clean `id` and 30 more
# DART-noise `id` demos per task, 8 more per task in each OOD family: new seeds) and pretrains 30k steps on all of
# them, then task-finetunes it as `make models` does. Each stage is one command of under an hour on one core. The
# studies below that read retain_ros/models/ measure today's embedded checkpoints; the numbers docs/policy.md gives
# for them name the checkpoints they were measured with.
STUDY ?= build/study
STUDY_PRE2 = $(MODELS_DATA)/pre2_id $(MODELS_DATA)/pre2_id_noise $(foreach v,$(MODELS_OOD),$(MODELS_DATA)/pre2_$(v))
STUDY_EVAL = $(BIN)/retain-eval sim --seed 7000 --workers 1 -q
# a base alone on the generalist suite, 10 per task (one target episode: the table needs the column)
BASE_EVAL = $(BIN)/retain-eval sim --workers 2 -q --ood "" --episodes 1 --generalist-episodes 10 --rows '^base$$'
.PHONY: study-data study-base2 study-ft2 study-eval1 study-eval2 study-coft study-eval-coft study-ft-frozen study-eval-frozen study-hold
study-eval1: $(STUDY)/eval_s1/report.json

study-data: models-data $(foreach d,$(STUDY_PRE2),$(d)/index.json)
$(MODELS_DATA)/pre2_id/index.json: | venv
	$(MODELS_SIM) --tasks generalist --variation id --episodes 30 --seed 200 --workers 2 --out $(@D)
$(MODELS_DATA)/pre2_id_noise/index.json: | venv
	$(MODELS_SIM) --tasks generalist --variation id --episodes 30 --seed 300 --noise 0.05 --workers 2 --out $(@D)
$(MODELS_DATA)/pre2_%/index.json: | venv
	$(MODELS_SIM) --tasks generalist --variation $* --episodes 8 --seed 400 --workers 2 --out $(@D)

study-base2: study-data
	$(MODELS_TRAIN) pretrain --data $(MODELS_PRE) $(STUDY_PRE2) --steps $(MODELS_PRETRAIN_STEPS) --lr 1e-3 --seed 0 \
		--out $(STUDY)/base_s2 --overwrite --quiet

study-ft2:
	$(MODELS_FINETUNE) --init $(STUDY)/base_s2 --data $(MODELS_DATA)/target_id --seed 1 --out $(STUDY)/task_ft_s2 \
		--overwrite --quiet

# Generalist suite, 10 episodes per task (100 per row), and the target in `id` (20), seeds 7000+ (no model saw them).
# The base rows and the finetuned rows are separate runs (the base can be scored while task-FT trains), combined by
# `retain-eval combine`; scale 1 is the embedded checkpoints.
STUDY_ROWS = --ood "" --alpha 0.5,0.75,0.9 --generalist-episodes 10
study-eval2: $(STUDY)/eval_s2/report.json
$(STUDY)/eval_s%/report.json: $(STUDY)/eval_s%_base/report.json $(STUDY)/eval_s%_ft/report.json
	$(BIN)/retain-eval combine $^ --out $(@D)
$(STUDY)/eval_s1_base/report.json:
	$(STUDY_EVAL) $(STUDY_ROWS) --rows '^base$$' --out $(@D)
$(STUDY)/eval_s1_ft/report.json:
	$(STUDY_EVAL) $(STUDY_ROWS) --rows '^(task-FT|RETAIN task-FT a=.*)$$' --out $(@D)
$(STUDY)/eval_s2_base/report.json:
	$(STUDY_EVAL) $(STUDY_ROWS) --base $(STUDY)/base_s2 --task-ft $(STUDY)/task_ft_s2 --rows '^base$$' --out $(@D)
$(STUDY)/eval_s2_ft/report.json:
	$(STUDY_EVAL) $(STUDY_ROWS) --base $(STUDY)/base_s2 --task-ft $(STUDY)/task_ft_s2 \
		--rows '^(task-FT|RETAIN task-FT a=.*)$$' --out $(@D)

# The loss along modality-specific task-FT paths (docs/policy.md, "Which groups forget"): some groups held at alpha 0
# (or 1) while the others move, on target and generalist demos, at scale 1 (embedded) and scale 2 (a few minutes).
STUDY_HOLDS = none vision:0 language:0 vision:0,language:0 action:0 vision:1,language:0
study-hold:
	mkdir -p $(STUDY)/hold
	for s in 1 2; do \
		if [ $$s = 1 ]; then b=$(MODELS_OUT)/base; f=$(MODELS_OUT)/task_ft; else b=$(STUDY)/base_s2; f=$(STUDY)/task_ft_s2; fi; \
		for h in $(STUDY_HOLDS); do echo "=== s$$s hold='$$h'"; \
			$(MODELS_TRAIN) path --base $$b --finetuned $$f --data $(MODELS_DATA)/target_id $(MODELS_DATA)/pre_id \
				--alphas 0,0.5,0.75,0.9,1 --samples 256 --hold "$$(echo $$h | sed s/none//)" || exit 1; done; \
	done > $(STUDY)/hold/sweep.log && cat $(STUDY)/hold/sweep.log

# co-FT with half of each batch from the target for task-FT's 10k steps (the embedded co-FT of earlier releases used
# 20% for 10k; today's: 50% for 20k, below): does a co-FT that learns the target as well as task-FT keep the
# generalist? Scored like the rows above (seeds 7000+).
study-coft: $(STUDY)/co_ft_tf50/model.safetensors
$(STUDY)/co_ft_tf50/model.safetensors: | venv
	$(MODELS_TRAIN) cofinetune --init $(MODELS_OUT)/base --data $(MODELS_DATA)/target_id --pretrain-data $(MODELS_PRE) \
		--target-fraction 0.5 --steps $(MODELS_FINETUNE_STEPS) --lr 5e-4 --seed 2 --out $(@D) --overwrite --quiet
study-eval-coft: $(STUDY)/eval_coft50/report.json
$(STUDY)/eval_coft50/report.json: $(STUDY)/co_ft_tf50/model.safetensors
	$(STUDY_EVAL) $(STUDY_ROWS) --co-ft $(STUDY)/co_ft_tf50 --rows '^(co-FT|RETAIN co-FT a=.*)$$' --out $(@D)

# The embedded co-FT (half of each batch from the target for 20k steps: as many target samples as task-FT's 10k full
# batches, with the generalist replayed all along; `make models`) and its merges (docs/policy.md, "co-FT with task-FT's
# target exposure"): the generalist suite (10 per task) and the target in `id` (20), seeds 7000+, about 11 min on one
# core; then the target in `id` and every OOD family at the resolving size (40 per cell, 160 pooled OOD, as `make
# study-resolve`), one run per row of about 10 min on one core, joined by `retain-eval combine`.
.PHONY: study-eval-co-ft study-eval-co-ft-ood
study-eval-co-ft: $(STUDY)/eval_co_ft/report.json
$(STUDY)/eval_co_ft/report.json: | venv
	$(STUDY_EVAL) --ood "" --alpha 0.75,0.9 --generalist-episodes 10 --rows '^(co-FT|RETAIN co-FT a=.*)$$' --out $(@D)
CO_FT_OOD = $(BIN)/retain-eval sim --seed 7000 --workers 1 -q --episodes 40 --generalist pick_red \
	--generalist-episodes 1 --alpha 0.9
study-eval-co-ft-ood: $(STUDY)/eval_co_ft_ood/report.json
$(STUDY)/eval_co_ft_ood_merge/report.json: | venv
	$(CO_FT_OOD) --rows '^RETAIN co-FT a=0.90$$' --out $(@D)
$(STUDY)/eval_co_ft_ood_coft/report.json: | venv
	$(CO_FT_OOD) --rows '^co-FT$$' --out $(@D)
$(STUDY)/eval_co_ft_ood/report.json: $(STUDY)/eval_co_ft_ood_merge/report.json $(STUDY)/eval_co_ft_ood_coft/report.json
	$(BIN)/retain-eval combine $^ --out $(@D)
# Two more merges on that path, each with the generalist suite (10 per task) and the target at the resolving size:
# alpha 0.95, and the language backbone at 0.5 with vision and action at 1 (co-FT's vision carries its viewpoint OOD).
# They are `make study-resolve`'s rows `co_ft_a95` and `co_ft_language` (its runs, one per row; the language row is
# not in the joined table); about 33 min each on one core.
.PHONY: study-eval-co-ft-more
study-eval-co-ft-more: $(STUDY)/resolve_rows/co_ft_a95/report.json $(STUDY)/resolve_rows/co_ft_language/report.json

# Is the base undertrained? (the embedded co-FT, 20k more steps with half of each batch from the pretraining data,
# beats it on the generalist suite). The base trained 20k more steps on the pretraining data alone at the finetune rate,
# then scored on the generalist suite (10 per task, seeds 7000+). About 30 + 6 min on one core.
STUDY_MORE_STEPS ?= 20000
.PHONY: study-base-longer
study-base-longer: $(STUDY)/eval_base_longer/report.json
$(STUDY)/base_longer/model.safetensors: | venv
	$(MODELS_TRAIN) finetune --init $(MODELS_OUT)/base --data $(MODELS_PRE) --steps $(STUDY_MORE_STEPS) --lr 5e-4 \
		--seed 5 --out $(@D) --overwrite --quiet
$(STUDY)/eval_base_longer/report.json: $(STUDY)/base_longer/model.safetensors
	$(BASE_EVAL) --seed 7000 --base $(STUDY)/base_longer --out $(@D)

# Does more DART noise in the pretraining data make a stronger generalist? (DART demos taught the second target its
# release: docs/policy.md, "Two skills on the co-FT path"; the earlier base failed mostly its places and pushes.) The
# embedded base is pretrained with 20 noisy `id` demos per generalist task (0.05 rad/s, seeds 70+, `pre_id_noise2`)
# beside the rest; this trains the earlier base, the same recipe (30k steps, lr 1e-3, seed 0) without them, and scores
# both on the generalist suite (10 per task, seeds 7000+ and 8000+). About 40 + 4 x 3 min. The embedded base scored 0.77
# against the earlier one's 0.50 over the 200 episodes (docs/policy.md, "More DART demos in the pretraining").
STUDY_PRE_NO_DART2 = $(filter-out $(MODELS_DATA)/pre_id_noise2,$(MODELS_PRE))
.PHONY: study-base-dart
study-base-dart: $(foreach s,7000 8000,$(STUDY)/eval_base_$(s)/report.json $(STUDY)/eval_base_no_dart2_$(s)/report.json)
$(STUDY)/base_no_dart2/model.safetensors: $(foreach d,$(STUDY_PRE_NO_DART2),$(d)/index.json)
	$(MODELS_TRAIN) pretrain --data $(STUDY_PRE_NO_DART2) --steps $(MODELS_PRETRAIN_STEPS) --lr 1e-3 --seed 0 \
		--out $(@D) --overwrite --quiet
$(STUDY)/eval_base_no_dart2_%/report.json: $(STUDY)/base_no_dart2/model.safetensors
	$(BASE_EVAL) --seed $* --base $(STUDY)/base_no_dart2 --out $(@D)
$(foreach s,7000 8000,$(STUDY)/eval_base_$(s)/report.json): $(STUDY)/eval_base_%/report.json: | venv
	$(BASE_EVAL) --seed $* --out $(@D)

# Why did co-FT lose OOD on the DART base (pooled 0.49 -> 0.29 with the earlier base; viewpoint 0.82 -> 0.20)? co-FT
# replays the pretraining data in half of each batch, and `pre_id_noise2` moved that replay towards `id` (the OOD
# families' share of the episodes 52% -> 39%). Two co-FTs from the embedded base with the embedded recipe: one
# replaying the earlier base's pretraining sets (`pre_id_noise2` left out of the replay only; seed 2 as the embedded
# co-FT), one replaying the same sets as the embedded co-FT with another seed (the seed-to-seed spread); each scored
# at alpha 1 and its merge at 0.95 on the comparison's episodes (`study-resolve`'s sizes and seeds). About 52 min per
# co-FT (two side by side) and 15 min per row on a free core; `make -j2`. Neither moved OOD: the base is the cause
# (docs/policy.md, "Why co-FT lost OOD on the DART base").
STUDY_COFT_VARIANTS = co_ft_replay_no_dart2 co_ft_seed3
# (the co-FT recipe of their release: the target's clean demos alone)
$(foreach v,$(STUDY_COFT_VARIANTS),$(STUDY)/$(v)/model.safetensors): private MODELS_TARGET_DATA = $(MODELS_DATA)/target_id
$(STUDY)/co_ft_replay_no_dart2/model.safetensors: $(foreach d,$(STUDY_PRE_NO_DART2),$(d)/index.json)
	$(MODELS_CO_FT) --pretrain-data $(STUDY_PRE_NO_DART2) --seed 2 --out $(@D) --overwrite --quiet
$(STUDY)/co_ft_seed3/model.safetensors: $(MODELS_PRE_FILES)
	$(MODELS_CO_FT) --pretrain-data $(MODELS_PRE) --seed 3 --out $(@D) --overwrite --quiet
.PHONY: study-coft-replay
study-coft-replay: $(foreach v,$(STUDY_COFT_VARIANTS),$(STUDY)/eval_$(v)/report.json)
$(foreach v,$(STUDY_COFT_VARIANTS),$(STUDY)/eval_$(v)/report.json): $(STUDY)/eval_%/report.json: \
		$(STUDY)/eval_%_a100/report.json $(STUDY)/eval_%_a95/report.json
	$(BIN)/retain-eval combine $^ --out $(@D)
$(foreach v,$(STUDY_COFT_VARIANTS),$(STUDY)/eval_$(v)_a100/report.json): $(STUDY)/eval_%_a100/report.json: \
		$(STUDY)/%/model.safetensors
	$(RESOLVE_EVAL) --co-ft $(STUDY)/$* --rows '$(RESOLVE_ROW_co_ft)' --out $(@D)
$(foreach v,$(STUDY_COFT_VARIANTS),$(STUDY)/eval_$(v)_a95/report.json): $(STUDY)/eval_%_a95/report.json: \
		$(STUDY)/%/model.safetensors
	$(RESOLVE_EVAL) --co-ft $(STUDY)/$* --rows '$(RESOLVE_ROW_co_ft_a95)' --out $(@D)

# Does a base with DART demos in the OOD families too keep its transfer to them? The DART base (20 noisy `id` demos
# per generalist task, `pre_id_noise2`) lost the earlier base's viewpoint OOD on the target (co-FT 0.82 -> 0.20,
# task-FT 0.62 -> 0.33; docs/policy.md, "Why co-FT lost OOD on the DART base"). This adds 8 noisy demos per
# generalist task in each OOD family (0.05 rad/s, seeds 170+) and pretrains a base on everything with the embedded
# recipe (30k steps, lr 1e-3) at two seeds (0, as embedded, and 1: how far two pretrainings lie apart), scores both
# on the generalist suite (BASE_EVAL, seeds 7000+ and 8000+), task-FTs and co-FTs the seed-0 base with the embedded
# recipes (seeds 1 and 2; co-FT replays the base's sets) and scores them and their merges at the comparison's sizes and
# seeds (RESOLVE_EVAL, one run per row). About 3 min of data on two cores, 56 min per pretraining (two side by side),
# 44 min for the two finetunes side by side, about 20 min per row on one core; `make -j2 study-base-ood-dart`. The base
# fell to 0.64 on the generalist suite and co-FT's viewpoint rose only to 0.40 (docs/policy.md, "A base with DART demos
# in the OOD families too").
STUDY_PRE_OOD_DART = $(foreach v,$(MODELS_OOD),$(MODELS_DATA)/pre_$(v)_noise)
STUDY_PRE_OOD_DART_FILES = $(foreach d,$(STUDY_PRE_OOD_DART),$(d)/index.json)
# co-FT first: the longest training, so `make -j2` starts it first
STUDY_OOD_DART_ROWS = co_ft co_ft_a95 task_ft task_ft_a90
# $(call study_ood_dart_eval,SUFFIX): RESOLVE_EVAL with base_SUFFIX and its task-FT and co-FT
study_ood_dart_eval = $(RESOLVE_EVAL) --base $(STUDY)/base_$(1) --task-ft $(STUDY)/task_ft_$(1) \
	--co-ft $(STUDY)/co_ft_$(1)
$(STUDY_PRE_OOD_DART_FILES): $(MODELS_DATA)/pre_%_noise/index.json: | venv
	$(MODELS_SIM) --tasks generalist --variation $* --episodes 8 --seed 170 --noise 0.05 --out $(@D)
$(STUDY)/base_ood_dart/model.safetensors: STUDY_PRETRAIN_SEED = 0
$(STUDY)/base_ood_dart_s1/model.safetensors: STUDY_PRETRAIN_SEED = 1
$(STUDY)/base_ood_dart/model.safetensors $(STUDY)/base_ood_dart_s1/model.safetensors: $(MODELS_PRE_FILES) \
		$(STUDY_PRE_OOD_DART_FILES)
	$(MODELS_TRAIN) pretrain --data $(MODELS_PRE) $(STUDY_PRE_OOD_DART) --steps $(MODELS_PRETRAIN_STEPS) --lr 1e-3 \
		--seed $(STUDY_PRETRAIN_SEED) --out $(@D) --overwrite --quiet
# (and of the longer-trained base below)
$(foreach b,ood_dart ood_dart_long,$(STUDY)/task_ft_$(b)/model.safetensors): $(STUDY)/task_ft_%/model.safetensors: \
		$(STUDY)/base_%/model.safetensors
	$(MODELS_FINETUNE) --init $(<D) --data $(MODELS_DATA)/target_id --seed 1 --out $(@D) --overwrite --quiet
$(foreach b,ood_dart ood_dart_long,$(STUDY)/co_ft_$(b)/model.safetensors): $(STUDY)/co_ft_%/model.safetensors: \
		$(STUDY)/base_%/model.safetensors
	$(MODELS_COFINETUNE) --init $(<D) --data $(MODELS_DATA)/target_id --pretrain-data $(MODELS_PRE) \
		$(STUDY_PRE_OOD_DART) --seed 2 --out $(@D) --overwrite --quiet
.PHONY: study-base-ood-dart
study-base-ood-dart: $(STUDY)/eval_ood_dart/report.json \
	$(foreach b,base_ood_dart base_ood_dart_s1,$(foreach s,7000 8000,$(STUDY)/eval_$(b)_$(s)/report.json))
$(STUDY)/eval_ood_dart/report.json: $(foreach r,$(STUDY_OOD_DART_ROWS),$(STUDY)/eval_ood_dart_rows/$(r)/report.json)
	$(BIN)/retain-eval combine $^ --out $(@D)
# each row waits for the finetuned checkpoint it loads
$(STUDY)/eval_ood_dart_rows/%/report.json: $(STUDY)/base_ood_dart/model.safetensors
	$(call study_ood_dart_eval,ood_dart) --rows '$(RESOLVE_ROW_$*)' --out $(@D)
$(foreach r,task_ft task_ft_a90,$(STUDY)/eval_ood_dart_rows/$(r)/report.json): $(STUDY)/task_ft_ood_dart/model.safetensors
$(foreach r,co_ft co_ft_a95,$(STUDY)/eval_ood_dart_rows/$(r)/report.json): $(STUDY)/co_ft_ood_dart/model.safetensors
$(STUDY)/eval_base_ood_dart_%/report.json: $(STUDY)/base_ood_dart/model.safetensors
	$(BASE_EVAL) --seed $* --base $(<D) --out $(@D)
$(STUDY)/eval_base_ood_dart_s1_%/report.json: $(STUDY)/base_ood_dart_s1/model.safetensors
	$(BASE_EVAL) --seed $* --base $(<D) --out $(@D)

# Is that base undertrained? Its loss still fell over its last 13k steps (0.166 -> 0.145) and it scored below the
# smaller mixes at 30k steps. The seed-0 base trained 30k more steps on the same data from its own weights, at about
# the rate its cosine ended on (peak 2e-4, with its own warm-up and cosine), then scored on the generalist suite
# (BASE_EVAL, seeds 7000+ and 8000+). 4,489 s on one core beside another job, then 2 x 5 min on 2 workers;
# `make study-base-ood-dart-long`. It scored 0.76 (docs/policy.md, "The same base trained 30k steps longer").
STUDY_LONG_STEPS ?= 30000
.PHONY: study-base-ood-dart-long
study-base-ood-dart-long: $(foreach s,7000 8000,$(STUDY)/eval_base_ood_dart_long_$(s)/report.json)
$(STUDY)/base_ood_dart_long/model.safetensors: $(STUDY)/base_ood_dart/model.safetensors
	$(MODELS_TRAIN) finetune --init $(<D) --data $(MODELS_PRE) $(STUDY_PRE_OOD_DART) --steps $(STUDY_LONG_STEPS) \
		--lr 2e-4 --seed 5 --out $(@D) --overwrite --quiet
$(STUDY)/eval_base_ood_dart_long_%/report.json: $(STUDY)/base_ood_dart_long/model.safetensors
	$(BASE_EVAL) --seed $* --base $(<D) --out $(@D)

# The longer-trained base's task-FT and co-FT (the recipes and seeds above) and the comparison's two rows that decide
# the issue's conditions (co-FT's merge at 0.95, task-FT), one run each at RESOLVE_EVAL's sizes and seeds; about 45 min
# for the finetunes side by side, 20 min per row on one core; `make -j2 study-base-ood-dart-long-rows`.
STUDY_OOD_DART_LONG_ROWS = co_ft_a95 task_ft
.PHONY: study-base-ood-dart-long-rows
study-base-ood-dart-long-rows: $(STUDY)/eval_ood_dart_long/report.json
$(STUDY)/eval_ood_dart_long/report.json: \
		$(foreach r,$(STUDY_OOD_DART_LONG_ROWS),$(STUDY)/eval_ood_dart_long_rows/$(r)/report.json)
	$(BIN)/retain-eval combine $^ --out $(@D)
$(STUDY)/eval_ood_dart_long_rows/task_ft/report.json: $(STUDY)/task_ft_ood_dart_long/model.safetensors
$(STUDY)/eval_ood_dart_long_rows/co_ft_a95/report.json: $(STUDY)/co_ft_ood_dart_long/model.safetensors
$(STUDY)/eval_ood_dart_long_rows/%/report.json:
	$(call study_ood_dart_eval,ood_dart_long) --rows '$(RESOLVE_ROW_$*)' --out $(@D)

# task-FT that moves only the vision encoder and language backbone (the action expert stays the base's): the loss along
# the task-FT path says the generalist is lost in the action expert (docs/policy.md, "Which groups forget"). 4000 steps
# (task-FT's 10k took 100 min here beside the other study jobs), then its loss along the path.
STUDY_FROZEN_STEPS ?= 4000
study-ft-frozen: $(STUDY)/task_ft_frozen_action/model.safetensors
	$(MODELS_TRAIN) path --base $(MODELS_OUT)/base --finetuned $(MODELS_OUT)/task_ft $(STUDY)/task_ft_frozen_action \
		--data $(MODELS_DATA)/target_id $(MODELS_DATA)/pre_id --alphas 0,0.5,0.75,0.9,1 --samples 256
$(STUDY)/task_ft_frozen_action/model.safetensors: | venv
	$(MODELS_TRAIN) finetune --init $(MODELS_OUT)/base --data $(MODELS_DATA)/target_id --freeze action \
		--steps $(STUDY_FROZEN_STEPS) --lr 5e-4 --seed 1 --out $(@D) --overwrite --quiet

study-eval-frozen: $(STUDY)/eval_frozen/report.json
$(STUDY)/eval_frozen/report.json: $(STUDY)/task_ft_frozen_action/model.safetensors
	$(BIN)/retain-eval sim --seed 7000 --workers 2 -q --ood "" --alpha 0.75,0.9 --generalist-episodes 10 \
		--task-ft $(STUDY)/task_ft_frozen_action --rows '^(task-FT|RETAIN task-FT a=.*)$$' --out $(@D)

# Two skills in sequence on the task-FT path (paper Eq. 4): the second skill finetuned (task-FT's recipe, 50 clean
# demos) from the first skill's task-FT merge at 0.9 and from the base, side by side (about 15 min each on free cores),
# then merged onto it, next to each single-skill merge and the base, on both targets and the generalist suite (seeds
# 7000+). Split into two runs of under an hour that `retain-eval combine` joins. The embedded second skill is the
# co-FT chain's (`make models`; its rows: `make study-skill2-coft`).
SKILL2_WORKERS = 2
SKILL2_EPISODES = 20
SKILL2_SEED = 7000
SKILL2_SIM = $(BIN)/retain-eval sim --seed $(SKILL2_SEED) --workers $(SKILL2_WORKERS) -q --ood "" --target2 $(MODELS_TARGET2)
SKILL2_EVAL = $(SKILL2_SIM) --alpha 0.9 --task-ft2 $(STUDY)/task_ft2 --task-ft2-single $(STUDY)/task_ft2_single \
	--skill-alphas 0.9,0.9 --episodes $(SKILL2_EPISODES) --generalist-episodes 10
.PHONY: study-skill2
study-skill2: $(STUDY)/eval_skill2/report.json
$(STUDY)/task_ft2/model.safetensors $(STUDY)/task_ft2_single/model.safetensors &: $(MODELS_DATA)/target2_id/index.json
	$(BIN)/retain-merge $(MODELS_OUT)/base $(MODELS_OUT)/task_ft --alpha 0.9 --groups reference \
		--out $(STUDY)/task_ft_merge --force -q
	$(MODELS_FINETUNE) --init $(STUDY)/task_ft_merge --data $(MODELS_DATA)/target2_id --seed 3 --out $(STUDY)/task_ft2 \
		--overwrite --quiet & chained=$$!; \
	$(MODELS_FINETUNE) --init $(MODELS_OUT)/base --data $(MODELS_DATA)/target2_id --seed 4 \
		--out $(STUDY)/task_ft2_single --overwrite --quiet; single=$$?; wait $$chained && test $$single = 0
$(STUDY)/eval_skill2_a/report.json: $(STUDY)/task_ft2/model.safetensors
	$(SKILL2_EVAL) --rows '^(base|task-FT|RETAIN task-FT a=0.90)$$' --out $(@D)
$(STUDY)/eval_skill2_b/report.json: $(STUDY)/task_ft2/model.safetensors
	$(SKILL2_EVAL) --rows '^(task-FT 2.*|RETAIN 2 skills.*|RETAIN task-FT 2.*)$$' --out $(@D)
$(STUDY)/eval_skill2/report.json: $(STUDY)/eval_skill2_a/report.json $(STUDY)/eval_skill2_b/report.json
	$(BIN)/retain-eval combine $^ --out $(@D)

# Two skills on the co-FT path, the embedded ones (`make models`): co_ft2, co-finetuned from the first skill's co-FT
# merge at MODELS_SKILL1_ALPHA, and co_ft2_single, the same from the base; their rows (and the two-skill merge at a2 =
# 0.75 too) on both targets and the generalist suite (seeds 7000+; docs/policy.md, "Two skills on the co-FT path").
# About 14 + 6 min on 2 workers.
SKILL2_CO_FT2 = $(MODELS_OUT)/co_ft2
SKILL2_CO_FT2_SINGLE = $(MODELS_OUT)/co_ft2_single
SKILL2_GENERALIST = --generalist-episodes 10
SKILL2_COFT_SIM = $(SKILL2_SIM) --task-ft2-single $(SKILL2_CO_FT2_SINGLE) --skill-recipe co_ft \
	--alpha $(MODELS_SKILL1_ALPHA) --episodes $(SKILL2_EPISODES) $(SKILL2_GENERALIST)
SKILL2_COFT_EVAL = $(SKILL2_COFT_SIM) --task-ft2 $(SKILL2_CO_FT2)
.PHONY: study-skill2-coft
study-skill2-coft: $(STUDY)/eval_skill2_coft/report.json $(STUDY)/eval_skill2_coft_a75/report.json
$(STUDY)/eval_skill2_coft/report.json: | venv
	$(SKILL2_COFT_EVAL) --skill-alphas $(MODELS_SKILL1_ALPHA),0.9 \
		--rows '^(RETAIN co-FT a=.*|co-FT 2.*|RETAIN co-FT 2.*)$$' --out $(@D)
$(STUDY)/eval_skill2_coft_a75/report.json: | venv
	$(SKILL2_COFT_EVAL) --skill-alphas $(MODELS_SKILL1_ALPHA),0.75 --rows '^RETAIN co-FT 2 skills.*$$' --out $(@D)

# The second skill's studies below ran when it learnt from the first 100 demos (50 clean, 50 DART): they keep them.
STUDY_TARGET2_100 = $(MODELS_DATA)/target2_id $(MODELS_DATA)/target2_id_noise
$(STUDY)/co_ft2_long/model.safetensors $(STUDY)/co_ft2_a1_%/model.safetensors \
	$(STUDY)/co_ft2_no_replay/model.safetensors: private MODELS_TARGET2_DATA = $(STUDY_TARGET2_100)

# Is the second skill only slower to learn from the first skill's merge? co_ft2 learnt 1 of 20 from the merge against
# co_ft2_single's 7 from the base (mean reward 0.30 against 0.56: partway). co_ft2's own command at twice the steps
# (private: the steps stay those of `make models`' stages), then its rows and the two-skill merge at a2 = 0.9 on both
# targets and the generalist suite, at `study-skill2-coft`'s sizes and seeds. 6,173 s on one core beside another job,
# then about 20 min on one worker; `make study-skill2-long`.
STUDY_SKILL2_LONG_STEPS ?= 40000
.PHONY: study-skill2-long
study-skill2-long: $(STUDY)/eval_skill2_long/report.json
$(STUDY)/co_ft2_long/model.safetensors: private MODELS_COFINETUNE_STEPS = $(STUDY_SKILL2_LONG_STEPS)
$(STUDY)/co_ft2_long/model.safetensors: $(MODELS_WORK)/skill2.done
	$(MODELS_CO_FT2_CHAINED) --out $(@D)
$(STUDY)/eval_skill2_long/report.json: private SKILL2_WORKERS = 1
$(STUDY)/eval_skill2_long/report.json: $(STUDY)/co_ft2_long/model.safetensors
	$(SKILL2_COFT_SIM) --task-ft2 $(<D) --skill-alphas $(MODELS_SKILL1_ALPHA),0.9 \
		--rows '^(co-FT 2|RETAIN co-FT 2 skills.*)$$' --out $(@D)

# Does a start closer to the base let the second skill be learnt on top of the first? co_ft2_single learns it from the
# base (7 of 20), co_ft2 not from the first skill's merge at a1 = 0.95 (2 of 20). co_ft2's command and seed from the
# first skill's merge at a1 = STUDY_SKILL2_A1, then its rows (the first skill's merge at a1, co-FT 2, the two-skill
# merge at a1, 0.9) at `study-skill2-coft`'s sizes and seeds; `make study-skill2-a1` (and STUDY_SKILL2_A1=0.5 beside
# it: 3,713 s each side by side with two evaluations, then 27 min on one worker). Reads the embedded base and co_ft
# and `make models-data`'s demos.
STUDY_SKILL2_A1 ?= 0.75
STUDY_SKILL2_A1_DIR = $(STUDY)/co_ft2_a1_$(STUDY_SKILL2_A1)
.PHONY: study-skill2-a1
study-skill2-a1: $(STUDY)/eval_skill2_a1_$(STUDY_SKILL2_A1)/report.json
$(STUDY_SKILL2_A1_DIR)/model.safetensors: private MODELS_SKILL1_ALPHA = $(STUDY_SKILL2_A1)
$(STUDY_SKILL2_A1_DIR)/model.safetensors: private MODELS_SKILL1_MERGE = $(STUDY)/skill1_merge_a1_$(STUDY_SKILL2_A1)
$(STUDY_SKILL2_A1_DIR)/model.safetensors: $(MODELS_DATA_FILES)
	$(MODELS_MERGE_SKILL1)
	$(MODELS_CO_FT2_CHAINED) --out $(@D)
$(STUDY)/eval_skill2_a1_$(STUDY_SKILL2_A1)/report.json: private MODELS_SKILL1_ALPHA = $(STUDY_SKILL2_A1)
$(STUDY)/eval_skill2_a1_$(STUDY_SKILL2_A1)/report.json: private SKILL2_WORKERS = 1
$(STUDY)/eval_skill2_a1_$(STUDY_SKILL2_A1)/report.json: $(STUDY_SKILL2_A1_DIR)/model.safetensors
	$(SKILL2_COFT_SIM) --task-ft2 $(<D) --skill-alphas $(MODELS_SKILL1_ALPHA),0.9 \
		--rows '^(RETAIN co-FT a=.*|co-FT 2|RETAIN co-FT 2 skills.*)$$' --out $(@D)

# ... or does the first target's replay keep it from the second? co_ft2's command from the first skill's merge at
# MODELS_SKILL1_ALPHA, its seed, without the first target's demos in the replay (as co_ft2_single replays), then its
# rows as above on 2 workers (2,128 s beside an evaluation, then 6.3 min); `make study-skill2-no-replay`.
.PHONY: study-skill2-no-replay
study-skill2-no-replay: $(STUDY)/eval_skill2_no_replay/report.json
$(STUDY)/co_ft2_no_replay/model.safetensors: private MODELS_SKILL1_MERGE = $(STUDY)/skill1_merge
$(STUDY)/co_ft2_no_replay/model.safetensors: private MODELS_CO_FT2_REPLAY = $(MODELS_PRE)
$(STUDY)/co_ft2_no_replay/model.safetensors: $(MODELS_DATA_FILES)
	$(MODELS_MERGE_SKILL1)
	$(MODELS_CO_FT2_CHAINED) --out $(@D)
$(STUDY)/eval_skill2_no_replay/report.json: $(STUDY)/co_ft2_no_replay/model.safetensors
	$(SKILL2_COFT_SIM) --task-ft2 $(<D) --skill-alphas $(MODELS_SKILL1_ALPHA),0.9 \
		--rows '^(co-FT 2|RETAIN co-FT 2 skills.*)$$' --out $(@D)

# Which groups carry the second skill through its merge? The loss along the second skill's path (the first skill's
# merge at MODELS_SKILL1_ALPHA -> co_ft2: the two-skill merge at a2 = alpha) on the second target's, the first target's
# and the generalist suite's demos, with groups held (the action expert at 1 or 0.9; vision and language at 1); about
# 5 min on one core; `make study-skill2-hold`.
STUDY_SKILL2_HOLDS = none action:1 vision:1,language:1 action:0.9
.PHONY: study-skill2-hold
study-skill2-hold: private MODELS_SKILL1_MERGE = $(STUDY)/skill1_merge
study-skill2-hold: $(MODELS_DATA_FILES)
	$(MODELS_MERGE_SKILL1)
	mkdir -p $(STUDY)/skill2_hold
	for h in $(STUDY_SKILL2_HOLDS); do echo "=== hold='$$h'"; \
		$(MODELS_TRAIN) path --base $(MODELS_SKILL1_MERGE) --finetuned $(MODELS_OUT)/co_ft2 \
			--data $(MODELS_DATA)/target2_id $(MODELS_DATA)/target_id $(MODELS_DATA)/pre_id \
			--alphas 0,0.5,0.75,0.9,0.95,1 --samples 256 --hold "$$(echo $$h | sed s/none//)" || exit 1; \
	done > $(STUDY)/skill2_hold/sweep.log && cat $(STUDY)/skill2_hold/sweep.log

# Does DART noise around the second target's demos teach its release? 50 demos with noise 0.05 rad/s (as the
# pretraining's `id` noise set) next to the 50 clean ones, task-FT 2's finetune from the base (10k steps, seed 4), then
# the second target alone, 20 episodes (seeds 7000+), beside the same finetune without them (`make study-skill2`'s
# task_ft2_single) on the same seeds.
SKILL2_DART_SIM = $(SKILL2_SIM) --episodes $(SKILL2_EPISODES)
SKILL2_DART_EVAL = $(SKILL2_DART_SIM) --generalist pick_red --generalist-episodes 1 --rows '^task-FT 2 \(from base\)$$'
.PHONY: study-skill2-dart
study-skill2-dart: $(STUDY)/eval_skill2_dart/report.json $(STUDY)/eval_skill2_single_base/report.json \
	$(STUDY)/eval_skill2_dart_full/report.json
$(STUDY)/task_ft2_single_dart/model.safetensors: $(MODELS_DATA)/target2_id_noise/index.json
	$(MODELS_FINETUNE) --init $(MODELS_OUT)/base --data $(MODELS_DATA)/target2_id $(MODELS_DATA)/target2_id_noise \
		--seed 4 --out $(@D) --overwrite --quiet
$(STUDY)/eval_skill2_dart/report.json: $(STUDY)/task_ft2_single_dart/model.safetensors
	$(SKILL2_DART_EVAL) --task-ft2-single $(STUDY)/task_ft2_single_dart --out $(@D)
# ... and with its merge at 0.9, on target 1 and the generalist suite too (10 per task)
$(STUDY)/eval_skill2_dart_full/report.json: $(STUDY)/task_ft2_single_dart/model.safetensors
	$(SKILL2_DART_SIM) --task-ft2-single $(STUDY)/task_ft2_single_dart --generalist-episodes 10 --alpha 0.9 \
		--rows '^(task-FT 2 \(from base\)|RETAIN task-FT 2 a=0.90)$$' --out $(@D)
$(STUDY)/eval_skill2_single_base/report.json: $(STUDY)/task_ft2_single/model.safetensors
	$(SKILL2_DART_EVAL) --task-ft2-single $(STUDY)/task_ft2_single --out $(@D)

# The comparison at sizes that tell the rows apart (40 `id` + 160 pooled OOD target episodes and 100 generalist
# episodes per row), on seeds no training used, with each action's gripper position executed at its own time (docs/policy.md,
# "The gripper inside a chunk"). One run per row, about 26-33 min on one core for a merged or co-FT row and 65 min for
# task-FT (`make -j2 study-resolve` runs two at a time; episodes are seeded one by one, so the worker count does not
# change them), joined by `retain-eval combine`. A row is RESOLVE_ROW_<name>, the `--rows` pattern of its run.
RESOLVE_EVAL = $(BIN)/retain-eval sim --seed 7000 --workers 1 -q --episodes 40 --generalist-episodes 10 \
	--alpha 0.5,0.75,0.9,0.95
RESOLVE_ROWS = base task_ft co_ft task_ft_a90 co_ft_a90 co_ft_a95 task_ft_a50 task_ft_a75 task_ft_language co_ft_a75
RESOLVE_ROW_base = ^base$$
RESOLVE_ROW_task_ft = ^task-FT$$
RESOLVE_ROW_co_ft = ^co-FT$$
RESOLVE_ROW_task_ft_a90 = ^RETAIN task-FT a=0.90$$
RESOLVE_ROW_co_ft_a90 = ^RETAIN co-FT a=0.90$$
RESOLVE_ROW_co_ft_a95 = ^RETAIN co-FT a=0.95$$
RESOLVE_ROW_task_ft_a50 = ^RETAIN task-FT a=0.50$$
RESOLVE_ROW_task_ft_a75 = ^RETAIN task-FT a=0.75$$
RESOLVE_ROW_task_ft_language = ^RETAIN task-FT language a=0.50$$
RESOLVE_ROW_co_ft_a75 = ^RETAIN co-FT a=0.75$$
RESOLVE_ROW_co_ft_language = ^RETAIN co-FT language a=0.50$$
.PHONY: study-resolve
study-resolve: $(STUDY)/resolve/report.json
$(STUDY)/resolve_rows/%/report.json: | venv
	$(RESOLVE_EVAL) --rows '$(RESOLVE_ROW_$*)' --out $(@D)
$(STUDY)/resolve/report.json: $(foreach r,$(RESOLVE_ROWS),$(STUDY)/resolve_rows/$(r)/report.json)
	$(BIN)/retain-eval combine $^ --out $(@D)

# The checks that sit at their thresholds, again on seeds no run used before (9000+) with more episodes: the embedded
# task-FT's and best merge's target `id` (100 each; the issue asks task-FT >= 0.85, the merge >= 0.8), and the
# two-skill check on the embedded chain (60 per target, 100 generalist episodes per row: the first skill's merge, the
# second's single-skill merge, the two-skill merge, and both co-finetunes of the second skill before their merges:
# co-FT 2 from the first skill's merge and from the base), each run under an hour on one core; `make -j2 study-checks`.
CHECK_SEED = 9000
CHECK_ID_EVAL = $(BIN)/retain-eval sim --seed $(CHECK_SEED) --workers 1 -q --ood "" --episodes 100 --alpha 0.95 \
	--generalist pick_red --generalist-episodes 1
CHECK_SKILL2_ROWS = skill1 skill2 two_skill co_ft2 co_ft2_single
CHECK_SKILL2_ROW_co_ft2 = ^co-FT 2$$
CHECK_SKILL2_ROW_co_ft2_single = ^co-FT 2 \(from base\)$$
CHECK_SKILL2_ROW_skill1 = ^RETAIN co-FT a=0.95$$
CHECK_SKILL2_ROW_skill2 = ^RETAIN co-FT 2 a=0.90$$
CHECK_SKILL2_ROW_two_skill = ^RETAIN co-FT 2 skills a=0.95,0.90$$
.PHONY: study-checks
study-checks: $(STUDY)/check_id/report.json $(STUDY)/check_skill2/report.json
$(STUDY)/check_id/report.json: | venv
	$(CHECK_ID_EVAL) --rows '^(task-FT|RETAIN co-FT a=0.95)$$' --out $(@D)
$(STUDY)/check_skill2_%/report.json: private SKILL2_SEED = $(CHECK_SEED)
$(STUDY)/check_skill2_%/report.json: private SKILL2_EPISODES = 60
$(STUDY)/check_skill2_%/report.json: private SKILL2_WORKERS = 1
$(STUDY)/check_skill2_%/report.json: | venv
	$(SKILL2_COFT_EVAL) --skill-alphas $(MODELS_SKILL1_ALPHA),$(CHECK_SKILL2_A2) --rows '$(CHECK_SKILL2_ROW_$*)' \
		--out $(@D)
$(STUDY)/check_skill2/report.json: $(foreach r,$(CHECK_SKILL2_ROWS),$(STUDY)/check_skill2_$(r)/report.json)
	$(BIN)/retain-eval combine $^ --out $(@D)
# co-FT 2 keeps more of the second skill than its merge at a2 = 0.9 does: both merges at a2 = 0.95 on the same seeds
# (440 episodes, 23 min on one core); `make study-checks-a2`.
CHECK_SKILL2_A2 = 0.9
CHECK_SKILL2_ROW_a2_0.95 = ^(RETAIN co-FT 2 skills a=0.95,0.95|RETAIN co-FT 2 a=0.95)$$
.PHONY: study-checks-a2
study-checks-a2: $(STUDY)/check_skill2_a2_0.95/report.json
$(STUDY)/check_skill2_a2_0.95/report.json: private CHECK_SKILL2_A2 = 0.95

# Does a group's own second-skill alpha keep more of the second skill? The two-skill merge and the single-skill merge
# at 0.95,0.9 with the language backbone's second-skill alpha at 1, and the paper's language-only merge (vision and
# action at 1, language at 0.9 and 0.75); 60 episodes per target on the check's seeds, the generalist suite left out
# (pick_red, one episode); three runs of about 10 min on one core; `make -j2 study-skill2-groups`.
SKILL2_GROUP_RUNS = language lang_only_0.9 lang_only_0.75
SKILL2_GROUP_ARGS_language = --skill-alphas 0.95,0.9 --skill2-group-alpha language=1
SKILL2_GROUP_ARGS_lang_only_0.9 = --skill-alphas 0.95,0.9 --skill2-group-alpha vision=1 --skill2-group-alpha action=1
SKILL2_GROUP_ARGS_lang_only_0.75 = --skill-alphas 0.95,0.75 --skill2-group-alpha vision=1 --skill2-group-alpha action=1
.PHONY: study-skill2-groups
study-skill2-groups: $(foreach r,$(SKILL2_GROUP_RUNS),$(STUDY)/skill2_groups/$(r)/report.json)
$(STUDY)/skill2_groups/%/report.json: private SKILL2_SEED = $(CHECK_SEED)
$(STUDY)/skill2_groups/%/report.json: private SKILL2_EPISODES = 60
$(STUDY)/skill2_groups/%/report.json: private SKILL2_WORKERS = 1
$(STUDY)/skill2_groups/%/report.json: private SKILL2_GENERALIST = --generalist pick_red --generalist-episodes 1
$(STUDY)/skill2_groups/%/report.json: | venv
	$(SKILL2_COFT_EVAL) $(SKILL2_GROUP_ARGS_$*) --rows '=1\.00' --out $(@D)

# Did DART noise around the first target's demos lift task-FT's `id`? The embedded task-FT finetunes on the target's
# 50 clean demos and 50 with noise 0.05 rad/s (the second target's recipe: seeds 50+; `make models`). The task-FT of
# earlier releases, the same finetune (seed 1) on the clean demos alone, trained here and scored as the embedded one
# is: `id` on the check's seeds (episode for episode against `study-checks`' check_id with `retain-eval paired`) and
# its OOD families at `study-resolve`'s sizes and seeds (10 generalist episodes, on pick_red alone: task-FT keeps none
# of the suite); `make study-task-ft-clean`.
.PHONY: study-task-ft-clean
study-task-ft-clean: $(STUDY)/check_id_task_ft_clean/report.json $(STUDY)/resolve_task_ft_clean/report.json
$(STUDY)/task_ft_clean/model.safetensors: private MODELS_TARGET_DATA = $(MODELS_DATA)/target_id
$(STUDY)/task_ft_clean/model.safetensors: $(MODELS_DATA)/target_id/index.json
	$(MODELS_TASK_FT) --out $(@D) --overwrite --quiet
$(STUDY)/check_id_task_ft_clean/report.json: $(STUDY)/task_ft_clean/model.safetensors
	$(CHECK_ID_EVAL) --task-ft $(<D) --rows '^task-FT$$' --out $(@D)
$(STUDY)/resolve_task_ft_clean/report.json: $(STUDY)/task_ft_clean/model.safetensors
	$(RESOLVE_EVAL) --task-ft $(<D) --generalist pick_red --rows '^task-FT$$' --out $(@D)

# Did the target's DART demos lift co-FT and its merge as they lifted task-FT? The embedded co-FT learns from the
# target's clean and DART demos (`make models`); the co-FT of earlier releases, the same command and seed (2) on the
# clean demos alone, trained here and scored as the embedded one is: the co-FT and its merge at 0.95 on the check's
# seeds (`id`, 100 each; paired against `study-checks`' check_id) and the merge at `study-resolve`'s sizes and seeds;
# `make -j2 study-co-ft-clean`.
.PHONY: study-co-ft-clean
study-co-ft-clean: $(STUDY)/check_id_co_ft_clean/report.json $(STUDY)/resolve_co_ft_clean_a95/report.json
$(STUDY)/co_ft_clean/model.safetensors: private MODELS_TARGET_DATA = $(MODELS_DATA)/target_id
$(STUDY)/co_ft_clean/model.safetensors: $(MODELS_PRE_FILES) $(MODELS_DATA)/target_id/index.json
	$(MODELS_CO_FT) --pretrain-data $(MODELS_PRE) --seed 2 --out $(@D) --overwrite --quiet
$(STUDY)/check_id_co_ft_clean/report.json: $(STUDY)/co_ft_clean/model.safetensors
	$(CHECK_ID_EVAL) --co-ft $(<D) --rows '^(co-FT|RETAIN co-FT a=0.95)$$' --out $(@D)
$(STUDY)/resolve_co_ft_clean_a95/report.json: $(STUDY)/co_ft_clean/model.safetensors
	$(RESOLVE_EVAL) --co-ft $(<D) --rows '$(RESOLVE_ROW_co_ft_a95)' --out $(@D)

# ---- LeRobot backend (pi0 / pi0.5 / SmolVLA checkpoints) --------------------------------------------------------------
# LeRobot 0.6 needs Python >= 3.12 and its own torch, so it lives in a separate environment; .venv stays without it.
# LEROBOT_PYTHON picks the interpreter; by default the first working Python >= 3.12 among python3.12, python3.13 and
# pyenv's 3.12 (found when first needed).
LR_VENV := .venv-lerobot
LR_BIN := $(LR_VENV)/bin
LR_STAMP := $(LR_VENV)/.installed
LR_MSGS_STAMP := $(LR_VENV)/.retain_ros_msgs
LEROBOT_PYTHON ?= $(shell for c in python3.12 python3.13 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	"$$c" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))' 2>/dev/null && { echo "$$c"; break; }; done)
LR_NO_PYTHON = make lerobot-env: LeRobot 0.6 needs Python >= 3.12 and found none (LEROBOT_PYTHON='$(LEROBOT_PYTHON)'). \
	Fix: install it (apt install python3.12-venv, or pyenv install 3.12) or pass its path: \
	make lerobot-env LEROBOT_PYTHON=/path/to/python3.12

.PHONY: lerobot-env test-lerobot lerobot-python

lerobot-env: $(LR_STAMP) $(LR_MSGS_STAMP)

# Prints the interpreter .venv-lerobot is made with; fails when there is none (.ci/run asks before building).
lerobot-python:
	@"$(LEROBOT_PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))' 2>/dev/null \
		|| { echo "$(LR_NO_PYTHON)" >&2; exit 1; }
	@echo "$(LEROBOT_PYTHON)"

$(LR_STAMP): requirements-lerobot.txt requirements-msgs.txt setup.py setup.cfg package.xml
	@if [ ! -x $(LR_BIN)/python ]; then \
		py=$$($(MAKE) -s --no-print-directory lerobot-python) || exit 1; \
		echo "creating $(LR_VENV) with $$py"; \
		"$$py" -m venv $(LR_VENV) || exit 1; \
	fi
	$(LR_BIN)/python -m pip install -q --upgrade pip
	$(LR_BIN)/python -m pip install -q -r requirements-lerobot.txt
	$(LR_BIN)/python -m pip install -q --no-deps -e .
	@touch $@

$(LR_MSGS_STAMP): msg/ActionChunk.msg msg/GroupAlpha.msg msg/CMakeLists.txt msg/package.xml msg/install_into_venv.sh \
		msg/patch_wheel_cmake.sh | $(LR_STAMP)
	msg/install_into_venv.sh $(LR_VENV) $(LR_VENV)/build/retain_ros_msgs
	@touch $@

test-lerobot: lerobot-env
	$(LR_BIN)/python -m pytest test/lerobot_backend

# ---- openpi (JAX) checkpoints and openpi's own client -------------------------------------------------------------------
# retain-merge reads and writes openpi's orbax `params` directories with orbax-checkpoint on JAX's CPU build, and the
# protocol tests run openpi-client's WebsocketClientPolicy against retain-serve: both live in .venv-openpi (JAX needs
# Python >= 3.11 and numpy 2), never in .venv. openpi-client is installed without its numpy<2 pin (its code runs on
# numpy 2; requirements-openpi.txt lists its other dependencies).
OP_VENV := .venv-openpi
OP_BIN := $(OP_VENV)/bin
OP_STAMP := $(OP_VENV)/.installed
OPENPI_PYTHON ?= $(PYTHON)
.PHONY: openpi-env test-openpi
openpi-env: $(OP_STAMP)
$(OP_STAMP): requirements-openpi.txt setup.py setup.cfg
	@"$(OPENPI_PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null || { echo "make \
		openpi-env: JAX 0.10 needs Python >= 3.11; give one: make openpi-env OPENPI_PYTHON=python3.12" >&2; exit 1; }
	@test -x $(OP_BIN)/python || "$(OPENPI_PYTHON)" -m venv $(OP_VENV)
	$(OP_BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_INDEX_URL),$(OP_BIN)/python -m pip install -q --index-url $(TORCH_INDEX_URL) \
		$$(grep "^torch==" requirements-openpi.txt))
	$(OP_BIN)/python -m pip install -q -r requirements-openpi.txt
	$(OP_BIN)/python -m pip install -q --no-deps openpi-client==0.1.2
	$(OP_BIN)/python -m pip install -q --no-deps -e .
	@touch $@

test-openpi: openpi-env
	$(OP_BIN)/python -m pytest test/openpi_backend -W "ignore::pytest.PytestUnraisableExceptionWarning"

# Value-guided steering in closed loop (docs/steering.md), seeds 7000+ (no training or rollout used them), with the
# embedded value function: the generalist suite (20 episodes per task; one target episode, which every run needs) for
# the base, the base + V-GPS and the base + random (one of the K samples at random: the control), and the target in id
# and every OOD family (20 per family) for task-FT's merge at 0.9 and the co-FT path's merge at 0.95, each with and
# without V-GPS. Six runs of under half an hour each on one core (the generalist ones about 6 min each on 2 workers),
# then one combined report per table; the control (`gen_random`: samples chosen at random) keeps its own report, since
# `retain-eval combine` joins only runs of the same steering settings.
VGPS ?= build/vgps
VGPS_EVAL = $(BIN)/retain-eval sim --steering value --seed 7000 -q
VGPS_GEN = --episodes 1 --generalist-episodes 20 --ood ''
VGPS_TGT_CELLS = --episodes 20 --generalist pick_red --generalist-episodes 1
VGPS_TGT = --alpha 0.9 $(VGPS_TGT_CELLS)
.PHONY: study-vgps
study-vgps: $(VGPS)/generalist/report.json $(VGPS)/gen_random/report.json $(VGPS)/target/report.json \
	$(VGPS)/tgt_coft/report.json
$(VGPS)/gen_plain/report.json: | venv
	$(VGPS_EVAL) $(VGPS_GEN) --rows '^base$$' --out $(@D)
$(VGPS)/gen_steered/report.json: | venv
	$(VGPS_EVAL) $(VGPS_GEN) --rows '^base \+ V-GPS$$' --out $(@D)
$(VGPS)/gen_random/report.json: | venv
	$(BIN)/retain-eval sim --steering random --steering-noise $(MODELS_VALUE_NOISE) --seed 7000 -q $(VGPS_GEN) \
		--rows '^base \+ random$$' --out $(@D)
$(VGPS)/tgt_plain/report.json: | venv
	$(VGPS_EVAL) $(VGPS_TGT) --rows '^RETAIN task-FT a=0.90$$' --out $(@D)
$(VGPS)/tgt_steered/report.json: | venv
	$(VGPS_EVAL) $(VGPS_TGT) --rows '^RETAIN task-FT a=0.90 \+ V-GPS$$' --out $(@D)
# Choosing alpha offline with the value function (docs/steering.md, "Choosing alpha offline"): held-out expert bags of
# the target (viewpoint and distractors, 2 each, seeds 3000+), each alpha's replay error and mean Q. A few minutes.
.PHONY: study-vgps-bags
$(VGPS)/bags/%/index.json: | venv
	$(MODELS_SIM) --tasks $(MODELS_TARGET) --variation $* --episodes 2 --seed 3000 --bag --workers 1 --out $(@D)
study-vgps-bags: $(VGPS)/bags/viewpoint/index.json $(VGPS)/bags/distractors/index.json
	$(BIN)/retain-eval bag $(VGPS)/bags/*/bags/* --base $(MODELS_OUT)/base --finetuned $(MODELS_OUT)/task_ft \
		--alpha $(MODELS_ALPHAS) --value $(MODELS_OUT)/value -q --out $(VGPS)/bag_value
$(VGPS)/generalist/report.json: $(VGPS)/gen_plain/report.json $(VGPS)/gen_steered/report.json
	$(BIN)/retain-eval combine $^ --out $(@D)
# The co-FT path's best merge (docs/policy.md: alpha 0.95) with and without V-GPS on the target, as the rows above.
$(VGPS)/tgt_coft/report.json: | venv
	$(VGPS_EVAL) --alpha 0.95 $(VGPS_TGT_CELLS) --workers 2 --rows '^RETAIN co-FT a=0.95( \+ V-GPS)?$$' --out $(@D)
$(VGPS)/target/report.json: $(VGPS)/tgt_plain/report.json $(VGPS)/tgt_steered/report.json
	$(BIN)/retain-eval combine $^ --out $(@D)
