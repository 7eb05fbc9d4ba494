"""The policy node as a real process: start from the params file, command, stop on stale/bad inputs, services."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fake_robot import FakeRobot
from retain_ros_msgs.msg import ActionChunk as ActionChunkMsg
from ros_helpers import latest_status, policy_node_args, wait_until
from std_msgs.msg import Float64, String
from trajectory_msgs.msg import JointTrajectory

from retain_ros.control import messages
from retain_ros.fr3 import FR3_DQ_MAX, FR3_Q_MAX, FR3_Q_MIN
from retain_ros.topics import FR3_ARM_JOINTS, Topics

T = Topics()
MODULE = "retain_ros.ros.policy_node"
STATUS = "/retain_policy/status"


def start_policy(ros, tiny_checkpoints, **params):
    _, _, observer, spawn = ros
    root, base, finetuned = tiny_checkpoints
    observer.collect(JointTrajectory, T.arm_command)
    observer.collect(String, STATUS, qos=_latched())
    observer.collect(ActionChunkMsg, "/retain_policy/action_chunk")
    observer.collect(Float64, T.gripper_command)
    proc = spawn(MODULE, policy_node_args(base, finetuned, root, **params), "policy")
    wait_until(lambda: observer.node.count_publishers(T.arm_command) > 0, 60, "the policy node's publishers", proc)
    return proc


def _latched():
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile

    return QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


def check_trajectory(msg: JointTrajectory) -> None:
    """What the Jazzy joint_trajectory_controller and the FR3 need."""
    times, positions, velocities = messages.trajectory_arrays(msg, FR3_ARM_JOINTS)
    assert list(msg.joint_names) == list(FR3_ARM_JOINTS)
    assert len(times) >= 1 and times[0] > 0 and np.all(np.diff(times) > 0), times
    assert np.all(np.isfinite(positions)) and np.all(np.isfinite(velocities))
    assert np.all(positions >= np.array(FR3_Q_MIN)) and np.all(positions <= np.array(FR3_Q_MAX))
    assert np.all(np.abs(velocities) <= np.array(FR3_DQ_MAX) + 1e-9)
    assert np.all(velocities[-1] == 0.0)
    assert messages.stamp_to_ns(msg.header.stamp) == 0


def count(observer, topic=T.arm_command) -> int:
    return len(observer.received(topic))


@pytest.mark.slow
def test_starts_from_params_file_commands_and_stops_on_stale_streams(ros, tiny_checkpoints):
    _, _, observer, _ = ros
    proc = start_policy(ros, tiny_checkpoints, execute_steps=3)
    fake = FakeRobot(observer.node)
    status = wait_until(lambda: (s := latest_status(observer)) and s["state"] == "commanding" and s,
                        60, "status 'commanding'", proc)
    assert status["active"] and len(status["weights_id"]) == 64
    assert status["alphas"] == {"vision": [0.5], "language": [0.5], "action": [0.5]}
    wait_until(lambda: count(observer) >= 5, 30, "5 trajectories", proc)
    for msg in observer.received(T.arm_command):
        check_trajectory(msg)
    widths = [m.data for m in observer.received(T.gripper_command)]
    assert widths and all(math.isfinite(w) and 0.0 <= w <= 0.08 for w in widths)
    chunk = observer.received("/retain_policy/action_chunk")[-1]
    actions, alphas = messages.action_chunk_arrays(chunk)
    assert chunk.weights_id == status["weights_id"] and chunk.generation == status["generation"]
    assert actions.shape == (chunk.horizon, 8) and chunk.action_dim == 8 and np.all(np.isfinite(actions))
    assert alphas == {"vision": (0.5,), "language": (0.5,), "action": (0.5,)}
    assert chunk.action_space == "droid_joint_velocity" and chunk.executed == 3 and chunk.inference_time > 0
    assert 0 < messages.stamp_to_ns(chunk.image_stamp) <= messages.stamp_to_ns(chunk.observation_stamp)

    # A camera stops: commands stop (within two periods), the status names the stream; it resumes by itself.
    fake.enabled["wrist"] = False
    wait_until(lambda: (s := latest_status(observer)) and "wrist" in s["stream_problems"], 30, "wrist stale", proc)
    before, n_status = count(observer), len(observer.received(STATUS))
    wait_until(lambda: len(observer.received(STATUS)) >= n_status + 2, 30, "status while the wrist is stale", proc)
    assert count(observer) <= before + 1  # at most one chunk was already on its way
    assert latest_status(observer)["state"] == "waiting"
    fake.enabled["wrist"] = True
    wait_until(lambda: count(observer) >= before + 3, 30, "commands after the camera returned", proc)

    # pause / resume
    assert observer.call_trigger("/retain_policy/pause").success
    wait_until(lambda: (s := latest_status(observer)) and s["paused"] and s["state"] == "paused", 30, "paused", proc)
    paused_at = count(observer)
    n_status = len(observer.received(STATUS))
    wait_until(lambda: len(observer.received(STATUS)) >= n_status + 2, 30, "status while paused", proc)
    assert count(observer) <= paused_at + 1
    assert observer.call_trigger("/retain_policy/resume").success
    wait_until(lambda: count(observer) >= paused_at + 3, 30, "commands after resume", proc)
    for msg in observer.received(T.arm_command):
        check_trajectory(msg)


@pytest.mark.slow
def test_an_instruction_from_a_plain_ros2_topic_pub_arrives(ros, tiny_checkpoints):
    """Issue 12: a transient-local subscription alone never hears a volatile publisher (`ros2 topic pub`)."""
    _, _, observer, _ = ros
    proc = start_policy(ros, tiny_checkpoints)
    FakeRobot(observer.node, latched_instruction=False)
    wait_until(lambda: (s := latest_status(observer)) and s["state"] == "commanding", 60, "status 'commanding'", proc)
    wait_until(lambda: count(observer) >= 1, 30, "a trajectory", proc)


@pytest.mark.slow
def test_bad_inputs_give_a_clear_reason_and_no_command(ros, tiny_checkpoints):
    _, _, observer, _ = ros
    proc = start_policy(ros, tiny_checkpoints)
    fake = FakeRobot(observer.node)
    wait_until(lambda: count(observer) >= 1, 60, "a first trajectory", proc)

    def stuck_with(stream, text):
        def check():
            s = latest_status(observer)
            return s and text in s["stream_problems"].get(stream, "")
        return check

    # wrong image encoding
    fake.wrong_encoding = "16UC1"
    wait_until(stuck_with("exterior", "16UC1"), 30, "encoding diagnostic", proc)
    frozen = count(observer)
    fake.wrong_encoding = None
    wait_until(lambda: count(observer) > frozen + 1, 30, "recovery after the encoding error", proc)

    # missing joint
    fake.joint_names, fake.q = list(FR3_ARM_JOINTS[:-1]), fake.q[:-1]
    wait_until(stuck_with("joint_states", "fr3_joint7"), 30, "missing-joint diagnostic", proc)
    # NaN joint state
    fake.joint_names, fake.q = list(FR3_ARM_JOINTS), np.full(7, np.nan)
    wait_until(stuck_with("joint_states", "not finite"), 30, "NaN diagnostic", proc)
    frozen = count(observer)
    n_status = len(observer.received(STATUS))
    wait_until(lambda: len(observer.received(STATUS)) >= n_status + 2, 30, "status while NaN", proc)
    assert count(observer) <= frozen + 1
    status = latest_status(observer)
    assert status["state"] == "waiting"
    assert "fr3_joint" in status["reason"]
    assert proc.proc.poll() is None


@pytest.mark.slow
@pytest.mark.parametrize("params, reason", [
    ({"lerobot_images": ["exterior"]}, "lerobot_images: 'exterior' is not CAMERA=FEATURE"),
    ({"camera_topics": ["/only/one"]}, "camera_names has 2 entries but camera_topics 1; give one topic per camera"),
    ({"alpha": "high"}, "alpha='high' has type string, the parameter's type is double"),
])
def test_a_bad_start_up_parameter_is_one_clear_line_and_nothing_is_commanded(ros, tiny_checkpoints, params, reason):
    _, _, observer, spawn = ros
    root, base, finetuned = tiny_checkpoints
    proc = spawn(MODULE, policy_node_args(base, finetuned, root, **params), "policy")
    line = wait_until(lambda: next((ln for ln in proc.output().splitlines()
                                    if "configure failed" in ln or "start-up failed" in ln), None), 60,
                      "the start-up error", proc)
    assert reason in line and "Traceback" not in proc.output()
    assert observer.node.count_publishers(T.arm_command) == 0
