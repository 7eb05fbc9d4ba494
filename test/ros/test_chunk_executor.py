"""Chunk execution logic: latency compensation, limits, NaN rejection, JTC-valid output (no ROS)."""

from __future__ import annotations

import numpy as np
import pytest

from retain_ros.fr3 import FR3_DQ_MAX, FR3_Q_MAX, FR3_Q_MIN
from retain_ros.ros.chunk_executor import ChunkExecutor, ExecutorConfig, JointLimits, UnsafeChunk, check_plan

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
DT = 1.0 / 15.0
MS = 1_000_000


def chunk(h=10, velocity=0.3, gripper=1.0):
    a = np.full((h, 8), velocity)
    a[:, 7] = gripper
    return a


def plan(executor, actions, elapsed_ms=0, kind="joint_velocity", q=HOME, q_now=None):
    return executor.plan(actions, DT, kind, 7, q, HOME if q_now is None else q_now, 0, elapsed_ms * MS)


def test_velocities_are_integrated_from_the_observed_state_and_end_at_rest():
    p = plan(ChunkExecutor(ExecutorConfig(execute_steps=8)), chunk())
    assert p.positions.shape == (8, 7) and p.skipped == 0
    np.testing.assert_allclose(p.positions[0], HOME + 0.3 * DT)
    np.testing.assert_allclose(p.positions[-1], HOME + 8 * 0.3 * DT)
    np.testing.assert_allclose(p.times_s, (np.arange(8) + 1) * DT)
    assert np.all(p.velocities[-1] == 0.0) and np.allclose(p.velocities[0], 0.3)
    assert p.gripper == 1.0
    check_plan(p, JointLimits())


def test_droid_actions_move_0_2_rad_times_a_per_step_after_scaling_the_vector():
    """pi0 / pi0.5 DROID checkpoints output normalised a: integrating it as rad/s would move the arm 3x too little."""
    p = plan(ChunkExecutor(ExecutorConfig(execute_steps=4)), chunk(velocity=0.3), kind="droid_joint_velocity")
    np.testing.assert_allclose(p.positions[0], HOME + 0.2 * 0.3)
    np.testing.assert_allclose(p.positions[-1], HOME + 4 * 0.2 * 0.3)
    big = chunk(velocity=0.0)
    big[:, 4], big[:, 0] = 2.0, 1.0  # scaled as a whole to (1.0, 0.5): direction kept, 3 rad/s on joint 5
    p = plan(ChunkExecutor(ExecutorConfig(execute_steps=1)), big, kind="droid_joint_velocity")
    np.testing.assert_allclose(p.positions[0][[4, 0]], HOME[[4, 0]] + 0.2 * np.array([1.0, 0.5]))
    assert not p.clamped


def test_actions_whose_time_passed_are_dropped():
    p = plan(ChunkExecutor(ExecutorConfig(execute_steps=4)), chunk(), elapsed_ms=150)  # 2.25 steps
    assert p.skipped == 2
    np.testing.assert_allclose(p.positions[0], HOME + 3 * 0.3 * DT)
    assert p.times_s[0] == pytest.approx(3 * DT - 0.15)
    with pytest.raises(UnsafeChunk, match="too slow"):
        plan(ChunkExecutor(ExecutorConfig()), chunk(h=3), elapsed_ms=400)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_chunks_are_never_planned(bad):
    a = chunk()
    a[4, 2] = bad
    executor = ChunkExecutor(ExecutorConfig())
    with pytest.raises(UnsafeChunk, match="NaN/inf"):
        plan(executor, a)
    q = HOME.copy()
    q[0] = np.nan
    with pytest.raises(UnsafeChunk, match="finite"):
        plan(executor, chunk(), q=q)


def test_positions_and_velocities_stay_within_limits():
    executor = ChunkExecutor(ExecutorConfig(execute_steps=10, max_start_jump_rad=6.0))
    near_limit = np.array(FR3_Q_MAX) - 0.02
    p = plan(executor, chunk(velocity=50.0), q=near_limit, q_now=near_limit)  # absurd velocities towards the limit
    assert p.clamped
    assert np.all(p.positions <= np.array(FR3_Q_MAX)) and np.all(p.positions >= np.array(FR3_Q_MIN))
    a = np.zeros((5, 8))
    a[:, :7] = np.array(FR3_Q_MIN) + 0.1
    a[1:, 0] = 2.0  # a position jump of ~4.8 rad in one step on joint 1
    p = plan(executor, a, kind="joint_position", q=a[0, :7], q_now=a[0, :7])
    steps = np.diff(np.concatenate([[0], p.times_s]))[:, None]
    speeds = np.abs(np.diff(np.vstack([a[0, :7], p.positions]), axis=0)) / steps
    assert np.all(speeds <= np.array(FR3_DQ_MAX) * 1.0001) and np.all(np.diff(p.times_s) > 0)
    check_plan(p, JointLimits())


def test_a_large_start_jump_is_rejected():
    with pytest.raises(UnsafeChunk, match="max_start_jump_rad"):
        plan(ChunkExecutor(ExecutorConfig()), chunk(), q_now=HOME + 1.0)


def test_blending_mixes_in_the_previous_remainder():
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8, blend_weight=0.5))
    plan(executor, chunk(velocity=0.3))
    p = executor.plan(chunk(velocity=-0.3), DT, "joint_velocity", 7, HOME, HOME, 0, 0)
    plain = ChunkExecutor(ExecutorConfig(execute_steps=8)).plan(chunk(velocity=-0.3), DT, "joint_velocity", 7, HOME,
                                                                HOME, 0, 0)
    assert np.all(p.positions[:, 0] > plain.positions[:, 0])


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="execute_steps"):
        ExecutorConfig(execute_steps=0)
    with pytest.raises(ValueError, match="position_min"):
        JointLimits(q_min=(0.0,))
    # a zero deceleration would divide by zero inside the stop path itself
    for bad in (0.0, -1.0, 50.0):
        with pytest.raises(ValueError, match="stop_decel_rad_s2"):
            ExecutorConfig(stop_decel_rad_s2=bad)
    for bad in (-0.01, 3.0):
        with pytest.raises(ValueError, match="position_margin_rad"):
            ExecutorConfig(position_margin_rad=bad)


def test_stopping_mid_chunk_decelerates_from_the_commanded_state_without_reversing():
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8, stop_decel_rad_s2=5.0))
    moving = plan(executor, chunk(velocity=0.9))
    stop = executor.stop(now_ns=int(0.2e9))  # 3 of 8 steps in, moving at 0.9 rad/s
    check_plan(stop, JointLimits())
    assert stop.times_s.shape == (1,) and np.all(stop.velocities == 0.0) and stop.gripper is None
    q_now = np.array([np.interp(0.2, moving.times_s, moving.positions[:, j]) for j in range(7)])
    assert stop.times_s[0] == pytest.approx(0.9 / 5.0)
    np.testing.assert_allclose(stop.positions[0], q_now + 0.9 * stop.times_s[0] / 2)  # forward, then rest
    assert np.all(stop.positions[0] < moving.positions[-1])  # short of where the chunk was going
    assert executor.stop(now_ns=int(0.3e9)) is None  # the last plan is forgotten: one stop only


def test_no_stop_once_the_last_trajectory_has_ended_or_nothing_was_sent():
    executor = ChunkExecutor(ExecutorConfig(execute_steps=3))
    assert executor.stop(now_ns=0) is None
    plan(executor, chunk())
    assert executor.stop(now_ns=int(1e9)) is None  # 3 steps = 0.2 s: already at rest, the controller holds


def test_a_stop_near_a_limit_stays_inside_it():
    q = np.array(FR3_Q_MAX) - 0.05
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8))
    executor.plan(chunk(velocity=0.5), DT, "joint_velocity", 7, q - 0.2, q - 0.2, 0, 0)
    stop = executor.stop(now_ns=int(0.45e9))
    check_plan(stop, JointLimits())
    assert np.all(stop.positions[0] <= np.array(FR3_Q_MAX) - 0.01 + 1e-12)
