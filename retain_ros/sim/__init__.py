"""Simulated FR3 tabletop (MuJoCo): tasks, variations, scripted expert, episode recording. No ROS imports here.

Entry points: `env.TabletopEnv` (one task under one variation, stepped with DROID actions), `tasks.SUITE` (the task
registry), `collect.collect` / `collect.expert_check`, and the `retain-sim` command (`cli.py`).
"""

import os

# Offscreen rendering without a display: EGL (Mesa on CPU). mujoco reads this when it is first imported, so it is set
# here, before any submodule imports mujoco; a user's own MUJOCO_GL (e.g. osmesa) wins. The first GL context loads
# Mesa's LLVM, which must come after triton's: gl_order.py, called by TabletopEnv before it makes its renderer.
os.environ.setdefault("MUJOCO_GL", "egl")
