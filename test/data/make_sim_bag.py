"""A 20-step simulator expert episode (pick_red, seed 3, 32 px images) as an MCAP bag: the bag the export round trip
in test/lerobot_backend reads (LeRobot's environment has no MuJoCo), and the one test/evaluate records afresh.

    .venv/bin/python test/data/make_sim_bag.py            # rewrites test/data/sim_pick_red_20 (about 160 kB)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

COMMITTED = Path(__file__).resolve().parent / "sim_pick_red_20"


def write_sim_bag(out: Path) -> Path:
    """Record the episode into the bag directory `out` (must not exist); returns it."""
    from retain_ros.sim.bag import write_episode_bag
    from retain_ros.sim.env import EnvConfig, TabletopEnv
    from retain_ros.sim.episode import run_expert_episode

    with TabletopEnv("pick_red", "id", EnvConfig(image_size=32, max_steps=20)) as env:
        episode = run_expert_episode(env, seed=3)
    return write_episode_bag(episode, out, storage="mcap")


if __name__ == "__main__":
    shutil.rmtree(COMMITTED, ignore_errors=True)
    print(write_sim_bag(COMMITTED))
    sys.exit(0)
