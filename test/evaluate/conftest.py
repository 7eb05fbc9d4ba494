"""Fixtures of the bag-evaluation tests: tiny checkpoints, bags written with rosbags (standard types), a simulator bag.

The ROS helpers (domain ids, Fast DDS profile, ROS_LOG_DIR, node processes) are the ROS tests' own, imported from
test/ros/ros_helpers.py rather than copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ros"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))

from ros_helpers import make_checkpoints  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The machine is shared: one intra-op thread keeps the tiny model fast and the tests steady under load."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def eval_checkpoints(tmp_path_factory):
    """(base, finetuned) tiny reference-VLA checkpoints with unrelated weights (horizon 4)."""
    base, finetuned = make_checkpoints(tmp_path_factory.mktemp("eval_ckpt"), horizon=4)
    return base, finetuned[0]


@pytest.fixture(scope="session")
def sim_bag(tmp_path_factory):
    """A 20-step expert episode recorded by the simulator as a bag (as `retain-sim collect --bag` writes it)."""
    from make_sim_bag import write_sim_bag

    return write_sim_bag(tmp_path_factory.mktemp("sim_bag") / "episode")
