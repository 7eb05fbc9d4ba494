"""`retain-eval replay` round trip through a running policy node.

A bag played into the node (separate processes, own ROS domain) comes back unchanged in the recording, on time,
together with the node's outputs, whose chunks equal the offline evaluation's.
"""

import subprocess
import sys

import numpy as np
import pytest
from test_bag_helpers import ARM, FINGERS, write_std_bag
from ros_helpers import REPO, NodeProcess, next_domain_id, policy_node_args, ros_env
from rosbags.highlevel import AnyReader

from retain_ros.bag_types import typestore
from retain_ros.evaluate.bag_eval import read_episode
from retain_ros.evaluate.bag_reader import Bag
from retain_ros.evaluate.cli import main
from retain_ros.control.inputs import InputSettings, NodeInputs
from retain_ros.evaluate.targets import ACTION, TargetBuilder
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy.interface import load_policy
from retain_ros.control.messages import action_chunk_arrays

CHUNK = "/retain_policy/action_chunk"


def read_all(path):
    """Read a bag as {topic: [(log_ns, raw bytes, message)]}."""
    out = {}
    with AnyReader([path], default_typestore=typestore()) as reader:
        for conn, log_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((log_ns, bytes(raw), reader.deserialize(raw, conn.msgtype)))
    return out


def offline_chunk(bag, base, finetuned, alpha):
    """The chunk `retain-eval bag` computes for the (constant) observation of `bag` at `alpha`."""
    with Bag(bag) as b:
        obs = read_episode(b, b.episodes()[0], NodeInputs(InputSettings.from_file(), ("exterior", "wrist")),
                           TargetBuilder(ACTION, ARM, FINGERS, 0.08, 1 / 15), "/action", 1).observations[-1]
    policy = load_policy(base)
    policy.load_merged(ResidentMerger.from_checkpoints(str(base), [str(finetuned)]).merge(alpha).tensors)
    return policy.predict(obs).actions


@pytest.mark.slow
def test_replay_round_trip_through_a_running_node(eval_checkpoints, tmp_path):
    base, finetuned = eval_checkpoints
    bag = write_std_bag(tmp_path / "in", "sqlite3", steps=45, constant=True)  # 3 s at 15 Hz
    env = ros_env(tmp_path, next_domain_id())
    node = NodeProcess("retain_ros.ros.policy_node", policy_node_args(base, [finetuned], base.parent, alpha=0.5),
                       env, tmp_path / "node.log")
    log = ""
    try:
        replay = subprocess.run(
            [sys.executable, "-m", "retain_ros.evaluate.cli", "replay", str(bag), "--record", str(tmp_path / "out"),
             "--record-inputs", "--wait-s", "90", "--linger-s", "3", "-q"],
            env=env, cwd=str(REPO), capture_output=True, text=True, timeout=300)
        log = node.output()[-4000:]
    finally:
        node.stop()
    assert replay.returncode == 0, f"{replay.stdout}\n{replay.stderr}\n--- node ---\n{log}"
    assert "no subscriber" not in replay.stdout, log
    sent, got = read_all(bag), read_all(tmp_path / "out")
    # messages in = messages out, byte for byte and in order
    played = [t for t in sent if t not in ("/fr3_arm_controller/joint_trajectory", "/franka_gripper/width_command")]
    assert "/cameras/exterior/image_raw" in played and "/action" in played
    for topic in played:
        messages = sent[topic]
        assert [raw for _, raw, _ in got.get(topic, [])] == [raw for _, raw, _ in messages], topic
    # arrival order follows the bag's log-time order (how closely the timing follows is a bench matter, not a test's)
    got_t = np.array([t for t, _, _ in got["/franka/joint_states"]], float)
    assert np.all(np.diff(got_t) >= 0)
    # the node's outputs were recorded, and its chunks equal what the offline evaluation computes
    assert got.get("/fr3_arm_controller/joint_trajectory") and got.get("/retain_policy/status"), log
    chunks = [m for _, _, m in got[CHUNK]]
    assert chunks, log
    expected = offline_chunk(bag, base, finetuned, 0.5)
    for chunk in chunks:
        actions, _ = action_chunk_arrays(chunk)
        np.testing.assert_allclose(actions, expected, atol=1e-5)


def test_replay_refuses_bad_arguments_before_touching_ros(tmp_path, capsys):
    bag = write_std_bag(tmp_path / "in", steps=2)
    (tmp_path / "exists").mkdir()
    for args, text in ((["--record", str(tmp_path / "exists")], "already exists"),
                       (["--record", str(tmp_path / "new"), "--rate", "0"], "--rate 0.0 must be > 0"),
                       (["--record", str(tmp_path / "new"), "--topics", "/nope"], "has no messages on ['/nope']")):
        assert main(["replay", str(bag), *args, "-q"]) == 2
        err = capsys.readouterr().err
        assert text in err and len(err.strip().splitlines()) == 1, err
    assert main(["replay", str(tmp_path / "missing"), "--record", str(tmp_path / "new2")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_replay_rate_scales_the_timing_and_records_mcap(tmp_path):
    """--rate 2 and mcap: every message arrives, in order; with --min-subscribers 0 no node is needed (the recorder is
    the subscriber). Tests assert no wall-clock timing; the pacing itself is measured, not asserted."""
    bag = write_std_bag(tmp_path / "in", "mcap", steps=30)  # 2 s recorded
    env = ros_env(tmp_path, next_domain_id())
    replay = subprocess.run(
        [sys.executable, "-m", "retain_ros.evaluate.cli", "replay", str(bag), "--record", str(tmp_path / "out"),
         "--record-inputs", "--rate", "2", "--min-subscribers", "0", "--storage", "mcap", "--linger-s", "1", "-q"],
        env=env, cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert next((tmp_path / "out").glob("*.mcap"))
    sent, got = read_all(bag), read_all(tmp_path / "out")
    assert [raw for _, raw, _ in got["/franka/joint_states"]] == [raw for _, raw, _ in sent["/franka/joint_states"]]
    got_t = np.array([t for t, _, _ in got["/franka/joint_states"]], float)
    assert np.all(np.diff(got_t) >= 0)
