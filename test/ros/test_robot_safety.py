"""Issue 12 on a real rclpy node process: start paused, stop on deactivate and on Ctrl-C, streamed steps.

The stop trajectory is the one-point, zero-velocity command `ChunkExecutor.stop` plans; chunk trajectories here have
`execute_steps` = 8 points, so a one-point trajectory after the event can only be the stop.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest
from fake_robot import FakeRobot
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from ros_helpers import latest_status, wait_until
from sensor_msgs.msg import JointState
from test_policy_node import STATUS, T, check_trajectory, count, start_policy

from retain_ros.fr3 import FR3_DQ_MAX
from retain_ros.control import messages
from retain_ros.control.chunk_executor import STEP_OVERLAP
from retain_ros.topics import FR3_ARM_JOINTS


def commanding(observer, proc):
    return wait_until(lambda: (s := latest_status(observer)) and s["state"] == "commanding" and s, 60,
                      "status 'commanding'", proc)


def commanding_chunks(ros, tiny_checkpoints):
    """A node commanding 8-point chunk trajectories from the fake robot's streams."""
    _, _, observer, _ = ros
    proc = start_policy(ros, tiny_checkpoints, execute_steps=8)
    FakeRobot(observer.node)
    commanding(observer, proc)
    wait_until(lambda: count(observer) >= 3, 30, "three trajectories", proc)
    assert not any(is_stop(m) for m in observer.received(T.arm_command))
    return observer, proc


def is_stop(msg) -> bool:
    times, _, velocities = messages.trajectory_arrays(msg, FR3_ARM_JOINTS)
    return len(times) == 1 and velocities is not None and np.all(velocities == 0.0) and times[0] >= 0.1


@pytest.mark.slow
def test_a_node_started_paused_commands_nothing_until_resume(ros, tiny_checkpoints):
    _, _, observer, _ = ros
    proc = start_policy(ros, tiny_checkpoints, start_paused=True)
    FakeRobot(observer.node)
    status = wait_until(lambda: (s := latest_status(observer)) and s["weights_id"] and s, 60, "a status", proc)
    n_status = len(observer.received(STATUS))
    wait_until(lambda: len(observer.received(STATUS)) >= n_status + 3, 30, "three more status messages", proc)
    status = latest_status(observer)
    assert status["state"] == "paused" and status["paused"] and "resume" in status["reason"]
    assert count(observer) == 0 and status["chunks"] == 0
    assert observer.call_trigger("/retain_policy/resume").success
    wait_until(lambda: count(observer) >= 3, 30, "commands after ~/resume", proc)


@pytest.mark.slow
def test_deactivate_sends_the_stop_and_then_nothing(ros, tiny_checkpoints):
    observer, proc = commanding_chunks(ros, tiny_checkpoints)
    request = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
    assert observer.call(ChangeState, "/retain_policy/change_state", request).success
    stop = wait_until(lambda: (m := observer.received(T.arm_command)) and is_stop(m[-1]) and m[-1], 30,
                      "the stop trajectory after deactivate", proc)
    check_trajectory(stop)
    after = count(observer)
    wait_until(lambda: (s := latest_status(observer)) and s["state"] == "inactive", 30, "status 'inactive'", proc)
    n_status = len(observer.received(STATUS))
    wait_until(lambda: len(observer.received(STATUS)) >= n_status + 2, 30, "status while inactive", proc)
    assert count(observer) == after


@pytest.mark.slow
def test_ctrl_c_sends_the_stop_before_the_node_exits(ros, tiny_checkpoints):
    """Started the way a shell's background job (`make test &`, a launch script run with &) starts a process: with
    SIGINT ignored, which children inherit. The node sets its own handler, so SIGINT still stops it cleanly."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        observer, proc = commanding_chunks(ros, tiny_checkpoints)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert proc.stop() == 0, proc.output()[-4000:]  # SIGINT, as Ctrl-C in a terminal or ros2 launch
    assert "sent the stop trajectory" in proc.output()
    stop = wait_until(lambda: (m := observer.received(T.arm_command)) and is_stop(m[-1]) and m[-1], 10,
                      "the stop trajectory after Ctrl-C")
    check_trajectory(stop)


@pytest.mark.slow
def test_stream_mode_sends_one_re_anchored_step_per_period(ros, tiny_checkpoints):
    """execute_steps 4: four single-point steps per chunk, one per period, each from the latest joint state.

    speed_scale 0.1 bounds a step to at most 5.26 * 0.1 * 1.25 / 15 = 0.044 rad, far less than the 0.2 rad the arm is
    moved by: a step anchored on the old state could not land near the new one."""
    _, _, observer, _ = ros
    observer.collect(JointState, T.joint_states, qos=1)
    proc = start_policy(ros, tiny_checkpoints, execution_mode="stream", execute_steps=4, speed_scale=0.1)
    fake = FakeRobot(observer.node)
    commanding(observer, proc)
    wait_until(lambda: count(observer) >= 12, 30, "twelve streamed steps", proc)
    status = wait_until(lambda: (s := latest_status(observer)) and s["commands"] >= 12 and s, 30, "status", proc)
    assert status["execution_mode"] == "stream"
    assert 4 * status["chunks"] - 4 < status["commands"] <= 4 * status["chunks"]  # every action sent, none skipped
    fake.q = fake.q + 0.2  # the arm is elsewhere: the next steps start from there
    moved = count(observer)
    wait_until(lambda: count(observer) >= moved + 6, 30, "steps after the arm moved", proc)
    step_s = STEP_OVERLAP / 15  # a step lasts 1.25 periods, so the controller still moves when the next arrives
    # one scaled step, plus what the commanded motion adds over the joint state's age (30 Hz here: <= 50 ms); a step
    # anchored on the old state would be >= 0.2 - 0.044 rad away
    bound = np.array(FR3_DQ_MAX) * 0.1 * (step_s + 0.05)
    for msg in observer.received(T.arm_command)[moved + 3:]:
        times, positions, velocities = messages.trajectory_arrays(msg, FR3_ARM_JOINTS)
        assert len(times) == 1 and velocities is None and times[0] == pytest.approx(step_s, abs=1e-6)
        assert np.all(np.abs(positions[0] - fake.q) <= bound)
