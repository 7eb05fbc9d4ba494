"""Closed loop through ROS: sim_robot_node (MuJoCo) + policy_node, started as the launch file starts them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ros_helpers import latest_status, policy_node_args, wait_until
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from test_policy_node import _latched, check_trajectory, count
from trajectory_msgs.msg import JointTrajectory

from retain_ros.control import messages
from retain_ros.fr3 import FR3_HOME_Q
from retain_ros.topics import FR3_ARM_JOINTS, Topics

T = Topics()


@pytest.mark.slow
def test_policy_drives_the_simulated_arm(ros, tiny_checkpoints):
    _, _, observer, spawn = ros
    root, base, finetuned = tiny_checkpoints
    observer.collect(JointTrajectory, T.arm_command)
    observer.collect(JointState, T.joint_states, qos=1)
    observer.collect(String, "/retain_policy/status", qos=_latched())
    observer.collect(String, "/sim_robot/episode")
    sim = spawn("retain_ros.ros.sim_robot_node", ["--ros-args", "-p", "task:=pick_red", "-p", "seed:=3",
                                                  "-p", "image_encoding:=bgr8", "-p", "image_size:=64"], "sim")
    wait_until(lambda: len(observer.received(T.joint_states)) > 0, 60, "simulated joint states", sim)
    start_q = messages.joint_positions(observer.received(T.joint_states)[-1], FR3_ARM_JOINTS)
    policy = spawn("retain_ros.ros.policy_node",
                   policy_node_args(base, finetuned, root, execute_steps=4, image_max_age_s=1.0,
                                    joint_states_max_age_s=1.0), "policy")
    wait_until(lambda: count(observer) >= 8, 90, "8 trajectories from the closed loop", policy)
    status = wait_until(lambda: (s := latest_status(observer)) and s["chunks"] >= 8 and s, 30, "status", policy)
    assert status["rejected_chunks"] == 0
    for msg in observer.received(T.arm_command):
        check_trajectory(msg)

    def moved():
        q = messages.joint_positions(observer.received(T.joint_states)[-1], FR3_ARM_JOINTS)
        return np.max(np.abs(q - start_q)) > 0.01
    wait_until(moved, 30, "the arm to move", sim)
    episode = json.loads(observer.received("/sim_robot/episode")[-1].data)
    assert episode["task"] == "pick_red" and episode["rejected_commands"] == 0

    # the episode services the end-to-end demo uses: choose the next episode by parameters, reset, ask for success
    assert observer.set_parameters("sim_robot", {"task": "pick_green", "seed": 5})[0].successful
    reset = observer.call_trigger("/sim_robot/reset")
    assert reset.success and json.loads(reset.message)["task"] == "pick_green"
    answer = observer.call_trigger("/sim_robot/success")
    assert json.loads(answer.message)["task"] == "pick_green" and answer.success in (True, False)

    # ~/home: the policy pauses and the simulated arm moves slowly to home_position, where it rests
    home = np.array(FR3_HOME_Q) + np.array([0.3, 0.0, 0.0, 0.0, 0.0, -0.2, 0.0])
    assert observer.set_parameters("retain_policy", {"home_position": home.tolist()})[0].successful
    answer = observer.call_trigger("/retain_policy/home")
    assert answer.success and "homing" in answer.message, answer.message

    def at_home():
        q = messages.joint_positions(observer.received(T.joint_states)[-1], FR3_ARM_JOINTS)
        return np.max(np.abs(q - home)) < 0.01
    wait_until(at_home, 90, "the arm at home_position", sim)  # slower on a busy machine
    status = latest_status(observer)
    assert status["state"] == "paused" and "homing" in status["reason"]
    assert episode_rejections(observer) == 0
    assert policy.proc.poll() is None and sim.proc.poll() is None


def episode_rejections(observer) -> int:
    """Commands the simulated controller refused so far (its episode report)."""
    return json.loads(observer.received("/sim_robot/episode")[-1].data)["rejected_commands"]
