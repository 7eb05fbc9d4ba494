"""The policy node serving merged LeRobot models, with live alpha changes, exactly as it serves the reference VLA.

The node runs in its own process from .venv-lerobot, with the repository's parameter file; a constant FakeRobot feeds
it. SmolVLA is tiny through its own VLM directory; the tiny pi0 through a start-up hook (tiny_pi_site/) that applies
the tests' size patch in the node process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("lerobot", reason="LeRobot is not installed here; run these with `make test-lerobot` "
                    "(.venv-lerobot, Python >= 3.12)")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ros"))

import numpy as np  # noqa: E402
from fake_robot import FakeRobot  # noqa: E402
from lerobot_helpers import SMOLVLA_IMAGES  # noqa: E402
from retain_ros_msgs.msg import ActionChunk as ActionChunkMsg  # noqa: E402
from ros_helpers import latest_status, policy_node_args  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from retain_ros.merge.live import LiveMerger  # noqa: E402
from retain_ros.control import messages  # noqa: E402
from retain_ros.ros.processes import (FASTDDS_PROFILE, NodeProcess, Observer, next_domain_id,  # noqa: E402
                                      ros_env, wait_until)
from retain_ros.topics import Topics  # noqa: E402

NODE = "retain_policy"
STATUS = "/retain_policy/status"
CHUNKS = "/retain_policy/action_chunk"


def _latched():
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile

    return QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


class NodeRun:
    """A policy node process on its own domain with an observer and a constant FakeRobot (this process's DDS set
    as test/ros sets it)."""

    def __init__(self, tmp_path, monkeypatch, args: list[str], pythonpath: str = "") -> None:
        (tmp_path / "profile.xml").write_text(FASTDDS_PROFILE)
        monkeypatch.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", str(tmp_path / "profile.xml"))
        monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path))
        domain = next_domain_id()
        self.observer = Observer(domain)
        self.observer.collect(JointTrajectory, Topics().arm_command)
        self.observer.collect(String, STATUS, qos=_latched())
        self.observer.collect(ActionChunkMsg, CHUNKS)
        env = ros_env(tmp_path, domain)
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (pythonpath, env.get("PYTHONPATH", ""))))
        self.node = NodeProcess("retain_ros.ros.policy_node", args, env, tmp_path / "node.log")
        FakeRobot(self.observer.node)

    def serving(self, weights_id: str, what: str, timeout_s: float = 120.0) -> dict:
        """The status once `weights_id` serves and the node commands."""
        return wait_until(lambda: (s := latest_status(self.observer)) and s["weights_id"] == weights_id
                          and s["state"] == "commanding" and s, timeout_s, what, self.node)

    def close(self) -> str:
        """Stop the node and the observer; returns the end of the node's log."""
        log = self.node.output()[-3000:]
        self.node.stop()
        self.observer.close()
        return log

    def check_chunks(self, weights_ids: set[str], log: str) -> None:
        """Every chunk came from one of `weights_ids`, all of them served, and each model always gave one chunk."""
        chunks = self.observer.received(CHUNKS)
        assert {c.weights_id for c in chunks} == weights_ids, log
        actions = {c.weights_id: messages.action_chunk_arrays(c)[0] for c in chunks}
        assert len({a.tobytes() for a in actions.values()}) == len(weights_ids), "an alpha change left the output"
        for c in chunks:  # constant inputs: each model always gives the same chunk, so none mixes two merges
            np.testing.assert_allclose(messages.action_chunk_arrays(c)[0], actions[c.weights_id], atol=1e-5)
        assert self.observer.received(Topics().arm_command)


@pytest.mark.slow
def test_the_node_serves_a_merged_smolvla_and_swaps_it_live(lerobot_checkpoints, tmp_path, monkeypatch):
    base, ft = lerobot_checkpoints("smolvla")
    recipes = LiveMerger.from_checkpoints(str(base), [str(ft)], groups="smolvla")
    fp = {alpha: recipes.recipe_id(recipes.resolve(alpha)) for alpha in (0.5, 0.9)}
    images = f"['exterior={SMOLVLA_IMAGES[0]}','wrist={SMOLVLA_IMAGES[1]}']"
    args = policy_node_args(base, [ft], base.parent, group_preset="smolvla", execute_steps=3)
    args += ["-p", f"lerobot_images:={images}"]
    run = NodeRun(tmp_path, monkeypatch, args)
    try:
        run.serving(fp[0.5], "the node commanding with the merged SmolVLA")
        wait_until(lambda: len(run.observer.received(CHUNKS)) >= 3, 60, "three chunks", run.node)
        before = len(run.observer.received(CHUNKS))

        # `ros2 param set /retain_policy alpha 0.9`: re-merged into the standby copy, swapped in between two chunks
        assert run.observer.set_parameters(NODE, {"alpha": 0.9})[0].successful
        run.serving(fp[0.9], "the alpha-0.9 model serving", 60)
        wait_until(lambda: any(c.weights_id == fp[0.9] for c in run.observer.received(CHUNKS)[before:]), 60,
                   "a chunk from the new model", run.node)
        assert run.observer.set_parameters(NODE, {"alpha": 1.5})[0].successful is False  # refused, old model serves
    finally:
        log = run.close()
    run.check_chunks({fp[0.5], fp[0.9]}, log)


@pytest.mark.slow
def test_a_bfloat16_pi0_with_one_copy_changes_alpha_in_place_in_the_node(lerobot_checkpoints, tmp_path, monkeypatch):
    """`dtype: bfloat16` and `swap_mode: in_place` on a LeRobot pi0 in the node process (tiny through the start-up
    hook in tiny_pi_site/): it serves in bf16 with one copy, and an alpha change holds the arm, merges into the
    serving weights and commands again from them."""
    base, ft = lerobot_checkpoints("pi0")
    recipes = LiveMerger.from_checkpoints(str(base), [str(ft)], groups="pi0")
    fp = {alpha: recipes.recipe_id(recipes.resolve(alpha)) for alpha in (0.5, 0.9)}
    args = policy_node_args(base, [ft], base.parent, group_preset="pi0", execution_mode="chunk", execute_steps=3,
                            dtype="bfloat16", swap_mode="in_place")
    run = NodeRun(tmp_path, monkeypatch, args, pythonpath=str(Path(__file__).resolve().parent / "tiny_pi_site"))
    try:
        status = run.serving(fp[0.5], "the node commanding with the pi0 in bf16")
        assert status["memory"]["copies"] == 1 and status["memory"]["in_place"] == "swap_mode in_place"
        wait_until(lambda: len(run.observer.received(CHUNKS)) >= 2, 60, "two chunks", run.node)
        assert run.observer.set_parameters(NODE, {"alpha": 0.9})[0].successful
        status = run.serving(fp[0.9], "commanding again at alpha 0.9, merged in place", 60)
        assert status["generation"] == 2 and status["memory"]["copies"] == 1
        wait_until(lambda: any(c.weights_id == fp[0.9] for c in run.observer.received(CHUNKS)), 60,
                   "a chunk from the new weights", run.node)
    finally:
        log = run.close()
    run.check_chunks({fp[0.5], fp[0.9]}, log)
