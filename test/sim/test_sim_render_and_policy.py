"""Rendering and a policy in one process, in either order (the order `make demo`'s step 4 and `retain-eval` use).

Regression test for the crash of `make demo` with PyPI's torch: a process rendered on EGL (Mesa's llvmpipe loads the
system's LLVM), then built a model, whose import of torch._dynamo loads triton's own LLVM: SIGSEGV. With the local
CPU-only torch (no triton) both orders always passed; CI runs this file in the venvs with PyPI's torch too. Each case
runs in its own process, so a crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTHING_OF_TORCH_YET = 'assert "torch._dynamo" not in sys.modules, "torch._dynamo was loaded before rendering"'

RENDER = """
import sys
from retain_ros.sim.env import EnvConfig, TabletopEnv
{check}
with TabletopEnv("push_red_to_purple", "viewpoint", EnvConfig(image_size=64)) as env:
    obs, instruction = env.reset(0), env.instruction
assert obs["exterior_image"].std() > 0, "blank frame"
"""

MODEL = """
import numpy as np
import torch
from retain_ros.paths import embedded_models_dir
from retain_ros.policy.reference_policy import ReferencePolicy
torch.set_num_threads(1)
policy = ReferencePolicy.from_pretrained(embedded_models_dir() / "base")
"""

PREDICT = """
from retain_ros.evaluate.sim_rollout import observation_from_sim
chunk = policy.predict(observation_from_sim(obs, instruction, 0))
assert np.isfinite(chunk.actions).all() and chunk.actions.shape[0] > 1, chunk.actions.shape
print("rendered and predicted", chunk.actions.shape)
"""


@pytest.mark.parametrize("order", ["render_then_model", "model_then_render"])
def test_one_process_renders_and_runs_the_policy(order):
    if order == "render_then_model":  # the simulator's imports must not have loaded torch's compiled stack already
        script = RENDER.format(check=NOTHING_OF_TORCH_YET) + MODEL
    else:
        script = MODEL + RENDER.format(check="")
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script + PREDICT], cwd=str(REPO),
                         capture_output=True, text=True, timeout=300)
    died = f" (killed by {signal.Signals(-run.returncode).name})" if run.returncode < 0 else ""
    assert run.returncode == 0, f"exit code {run.returncode}{died}\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    assert "rendered and predicted" in run.stdout
