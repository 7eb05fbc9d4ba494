"""Helpers of the ROS tests: tiny checkpoints, the policy node's arguments, the latest status.

The isolated ROS environment per test (own ROS_DOMAIN_ID, Fast DDS profile, ROS_LOG_DIR under the test's tmp dir),
node processes, waiting and the observer node live in the package (`retain_ros/ros/processes.py`, which the demo
uses too) and are re-exported here for the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retain_ros.ros.processes import (  # noqa: F401  (re-exported for the tests)
    FASTDDS_PROFILE, NodeProcess, Observer, next_domain_id, ros_env, wait_until)

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "fr3_droid.yaml"


def make_checkpoints(root: Path, num_finetuned: int = 1, horizon: int = 6) -> tuple[Path, list[Path]]:
    """A tiny reference-VLA base and finetuned copies with very different weights (so alphas give distinct chunks)."""
    from retain_ros.policy.configuration_reference import ReferenceVLAConfig
    from retain_ros.policy.processor_reference import NormalizationStats
    from retain_ros.policy.reference_policy import random_policy

    config = ReferenceVLAConfig.tiny(horizon=horizon)
    stats = NormalizationStats(np.zeros(8), np.ones(8), np.zeros(8), np.full(8, 0.3))
    base = random_policy(config, seed=1, stats=stats).save_pretrained(root / "base")
    finetuned = [random_policy(config, seed=10 + i, stats=stats).save_pretrained(root / f"ft{i + 1}")
                 for i in range(num_finetuned)]
    return base, finetuned


def reference_id(manager, alpha: float) -> str:
    """The recipe identity a `ModelManager`'s merger gives `alpha`."""
    merger = manager._merger
    return merger.recipe_id(merger.resolve(alpha))


def policy_node_args(base: Path, finetuned: list[Path], root: Path, **params: object) -> list[str]:
    """`--ros-args --params-file config/fr3_droid.yaml -p ...` for the policy node (as sim.launch.py passes: the
    simulator's overrides, armed at full speed with the topic gripper, unless `params` says otherwise)."""
    from retain_ros.control.params import SIM_OVERRIDES

    args = ["--ros-args", "--params-file", str(CONFIG), "-p", f"checkpoint_root:={root}",
            "-p", f"base_checkpoint:={base}",
            "-p", "finetuned_checkpoints:=[" + ",".join(f"'{f}'" for f in finetuned) + "]"]
    for name, value in {**SIM_OVERRIDES, **params}.items():
        args += ["-p", f"{name}:={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


def latest_status(observer: Observer, topic: str = "/retain_policy/status") -> dict | None:
    """The newest ~/status as a dict."""
    messages = observer.received(topic)
    return json.loads(messages[-1].data) if messages else None
