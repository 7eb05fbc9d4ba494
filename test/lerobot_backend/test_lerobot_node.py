"""The policy node serving a merged LeRobot SmolVLA, with a live alpha change, exactly as it serves the reference VLA.

The node runs in its own process from .venv-lerobot, with the repository's parameter file plus the mapping of the
tiny SmolVLA's image features; a constant FakeRobot feeds it. SmolVLA is tiny through its own VLM directory, so the
node process loads it with stock LeRobot (the tiny pi0 needs an in-process patch and is covered in-process).
"""

from __future__ import annotations

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


@pytest.mark.slow
def test_the_node_serves_a_merged_smolvla_and_swaps_it_live(lerobot_checkpoints, tmp_path, monkeypatch):
    (tmp_path / "profile.xml").write_text(FASTDDS_PROFILE)  # this process's DDS settings, as test/ros sets them
    monkeypatch.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", str(tmp_path / "profile.xml"))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path))
    base, ft = lerobot_checkpoints("smolvla")
    recipes = LiveMerger.from_checkpoints(str(base), [str(ft)], groups="smolvla")
    fp = {alpha: recipes.recipe_id(recipes.resolve(alpha)) for alpha in (0.5, 0.9)}
    domain = next_domain_id()
    observer = Observer(domain)
    observer.collect(JointTrajectory, Topics().arm_command)
    observer.collect(String, STATUS, qos=_latched())
    observer.collect(ActionChunkMsg, CHUNKS)
    images = f"['exterior={SMOLVLA_IMAGES[0]}','wrist={SMOLVLA_IMAGES[1]}']"
    args = policy_node_args(base, [ft], base.parent, group_preset="smolvla", execute_steps=3)
    args += ["-p", f"lerobot_images:={images}"]
    node = NodeProcess("retain_ros.ros.policy_node", args, ros_env(tmp_path, domain), tmp_path / "node.log")
    try:
        FakeRobot(observer.node)
        status = wait_until(lambda: (s := latest_status(observer)) and s["state"] == "commanding" and s,
                            120, "the node commanding with the merged SmolVLA", node)
        assert status["weights_id"] == fp[0.5]
        wait_until(lambda: len(observer.received(CHUNKS)) >= 3, 60, "three chunks", node)
        before = len(observer.received(CHUNKS))

        # `ros2 param set /retain_policy alpha 0.9`: re-merged into the standby copy, swapped in between two chunks
        assert observer.set_parameters(NODE, {"alpha": 0.9})[0].successful
        wait_until(lambda: (s := latest_status(observer)) and s["weights_id"] == fp[0.9] and s, 60,
                   "the alpha-0.9 model serving", node)
        wait_until(lambda: any(c.weights_id == fp[0.9] for c in observer.received(CHUNKS)[before:]), 60,
                   "a chunk from the new model", node)
        assert observer.set_parameters(NODE, {"alpha": 1.5})[0].successful is False  # refused, old model serves
    finally:
        log = node.output()[-3000:]
        node.stop()
        observer.close()
    chunks = observer.received(CHUNKS)
    assert {c.weights_id for c in chunks} == {fp[0.5], fp[0.9]}, log
    actions = {c.weights_id: messages.action_chunk_arrays(c)[0] for c in chunks}
    assert actions[fp[0.5]].shape == (actions[fp[0.5]].shape[0], 8)
    assert not np.allclose(actions[fp[0.5]], actions[fp[0.9]]), "the alpha change did not change the output"
    for c in chunks:  # constant inputs: each model always gives the same chunk, so none mixes two merges
        np.testing.assert_allclose(messages.action_chunk_arrays(c)[0], actions[c.weights_id], atol=1e-5)
    assert observer.received(Topics().arm_command)
