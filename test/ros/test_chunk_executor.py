"""Chunk execution logic: latency compensation, limits, NaN rejection, JTC-valid output, streamed steps (no ROS).

Numbers are worked by hand in the comments. Tests about something else than acceleration use FAST (an acceleration
limit too high to matter), so their timing stays the chunk's own.
"""

from __future__ import annotations

import numpy as np
import pytest

from retain_ros.fr3 import FR3_DQ_MAX, FR3_Q_MAX, FR3_Q_MIN
from retain_ros.control.chunk_executor import (STEP_OVERLAP, ChunkExecutor, ExecutorConfig, JointLimits, MeasuredState,
                                               PlannedCommand, UnsafeChunk, check_plan)

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
DT = 1.0 / 15.0
MS = 1_000_000
FAST = JointLimits(ddq_max=(1e4,) * 7)


def chunk(h=10, velocity=0.3, gripper=1.0):
    a = np.full((h, 8), velocity)
    a[:, 7] = gripper
    return a


def plan(executor, actions, elapsed_ms=0, kind="joint_velocity", q=HOME, q_now=None):
    return executor.plan(actions, DT, kind, 7, q, HOME if q_now is None else q_now, 0, elapsed_ms * MS)


def sampled_peaks(p, samples: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Peak |velocity| and |acceleration| per joint of the controller's motion, sampled (not from the planner's maths).

    The first 5 ms are left out of the acceleration: the command starts from the arm's velocity, which it cannot
    change instantly, and the planner allows that segment the speed the arm already has.
    """
    t = np.linspace(0.0, p.duration_s, samples)
    v = np.array([p.state_at(x)[1] for x in t])
    a = np.diff(v, axis=0) / np.diff(t)[:, None]
    return np.abs(v).max(axis=0), np.abs(a[t[1:] > 0.005]).max(axis=0)


def test_velocities_are_integrated_from_the_observed_state_and_end_at_rest():
    p = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=8)), chunk())
    assert p.positions.shape == (8, 7) and p.skipped == 0 and not p.braking_tail  # FAST: it brakes at once
    np.testing.assert_allclose(p.positions[0], HOME + 0.3 * DT)
    np.testing.assert_allclose(p.positions[-1], HOME + 8 * 0.3 * DT)
    np.testing.assert_allclose(p.times_s, (np.arange(8) + 1) * DT)
    assert np.all(p.velocities[-1] == 0.0) and np.allclose(p.velocities[0], 0.3)
    assert p.gripper == 1.0
    check_plan(p, FAST)


def test_each_executed_action_brings_its_own_gripper_position_on_the_way_to_its_point():
    actions = chunk()
    actions[:, 7] = [0.0] * 5 + [1.0] * 5  # the close is the 6th action
    p = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=8)), actions)
    assert p.gripper == 0.0 and p.gripper_at(0.0) == 0.0
    np.testing.assert_allclose(p.gripper_times_s, np.concatenate([[0.0], p.times_s[:7]]))
    assert p.gripper_at(p.times_s[4] - 1e-6) == 0.0 and p.gripper_at(p.times_s[4]) == 1.0
    late = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=8)), actions, elapsed_ms=140)  # 2 actions passed
    assert late.skipped == 2 and late.gripper_positions.tolist() == [0.0] * 3 + [1.0] * 5
    assert late.gripper_at(late.times_s[2]) == 1.0


def test_droid_actions_move_0_2_rad_times_a_per_step_after_scaling_the_vector():
    """pi0 / pi0.5 DROID checkpoints output normalised a: integrating it as rad/s would move the arm 3x too little."""
    p = plan(ChunkExecutor(ExecutorConfig(execute_steps=4)), chunk(velocity=0.3), kind="droid_joint_velocity")
    np.testing.assert_allclose(p.positions[0], HOME + 0.2 * 0.3)
    assert p.actions_executed == 4
    np.testing.assert_allclose(p.positions[3], HOME + 4 * 0.2 * 0.3)
    big = chunk(velocity=0.0)
    big[:, 4], big[:, 0] = 2.0, 1.0  # scaled as a whole to (1.0, 0.5): direction kept, 3 rad/s on joint 5
    p = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=1)), big, kind="droid_joint_velocity")
    np.testing.assert_allclose(p.positions[0][[4, 0]], HOME[[4, 0]] + 0.2 * np.array([1.0, 0.5]))
    assert not p.clamped


def test_actions_whose_time_passed_are_dropped():
    p = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=4)), chunk(), elapsed_ms=150)  # 2.25 steps
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
    assert np.all(p.positions[:8, 0] > plain.positions[:8, 0])


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
    executor = ChunkExecutor(ExecutorConfig(FAST, execute_steps=8, stop_decel_rad_s2=5.0))
    moving = plan(executor, chunk(velocity=0.9))
    stop = executor.stop(now_ns=int(0.2e9))  # 3 of 8 steps in, moving at 0.9 rad/s
    check_plan(stop, JointLimits())
    assert stop.times_s.shape == (1,) and np.all(stop.velocities == 0.0) and stop.gripper is None
    q_now = np.array([np.interp(0.2, moving.times_s, moving.positions[:, j]) for j in range(7)])
    assert stop.times_s[0] == pytest.approx(0.9 / 5.0)
    np.testing.assert_allclose(stop.positions[0], q_now + 0.9 * stop.times_s[0] / 2)  # forward, then rest
    assert np.all(stop.positions[0] < moving.positions[-1])  # short of where the chunk was going
    again = executor.stop(now_ns=int(0.3e9))  # the stop is the running command: a second one continues its braking
    np.testing.assert_allclose(again.start_velocity, stop.state_at(0.1)[1])
    assert executor.stop(now_ns=int(1e9)) is None  # at rest: the controller holds


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


def test_a_move_from_an_arm_driven_against_a_limit_brakes_as_a_stop_would_then_moves_within_its_limits():
    """Joint 4 at 0.4 rad/s, 3 mm from its lower limit: no brake keeps 10 rad/s^2 (0.008 rad at least), so the brake
    is the stop's best (with a note), and the move home from its rest point is checked, and kept, on its own."""
    q = HOME.copy()
    q[3] = FR3_Q_MIN[3] + 0.003
    v = np.zeros(7)
    v[3] = -0.4
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8))
    move = executor.plan_move(HOME, MeasuredState(q, v, 0.0), 0, speed_scale=0.1)
    assert "cannot stop within every limit" in move.note and not move.is_stop
    assert move.positions.shape == (2, 7) and (move.velocities == 0.0).all()
    np.testing.assert_allclose(move.positions[-1], HOME)
    brake_s = move.times_s[0]
    t = np.linspace(brake_s, move.duration_s, 2000)
    velocity = np.array([move.state_at(x)[1] for x in t])
    acceleration = np.diff(velocity, axis=0) / np.diff(t)[:, None]
    assert np.all(np.abs(velocity) <= 0.1 * np.array(FR3_DQ_MAX) * 1.001)
    assert np.all(np.abs(acceleration) <= 0.1 * 10.0 * 1.01)


def test_a_move_is_planned_from_any_moving_state_inside_the_limits():
    """Seeded: arms moving up to 1 rad/s, 5 cm or more inside the limits, measured with lag and age (after a pause)."""
    rng = np.random.default_rng(3)
    lo, hi = np.array(FR3_Q_MIN) + 0.05, np.array(FR3_Q_MAX) - 0.05
    for _ in range(300):
        executor = ChunkExecutor(ExecutorConfig(execute_steps=4))
        q = np.clip(HOME + rng.uniform(-0.5, 0.5, 7), lo, hi)
        actions = chunk(velocity=0.0)
        actions[:, :7] = rng.uniform(-1.0, 1.0, 7)
        running = executor.plan(actions, DT, "joint_velocity", 7, q, q, 0, 0)
        now = int(rng.uniform(0.0, running.duration_s) * 1e9)
        q_now, v_now = running.state_at(now * 1e-9)
        lag = MeasuredState(q_now + rng.normal(0, 0.01, 7), v_now + rng.normal(0, 0.1, 7), rng.choice([0.0, 0.03]))
        executor.stop(now, lag)
        move = executor.plan_move(HOME, lag, now + 10 * MS, speed_scale=0.1)
        np.testing.assert_allclose(move.positions[-1], HOME)
        assert (move.velocities[-1] == 0.0).all()


def test_default_position_limits_are_the_urdf_ones_inside_the_mechanical_range():
    """franka_description's FR3 joint_limits.yaml: joint 1 is 0.157 rad inside the datasheet's 2.9007."""
    from retain_ros.fr3 import FR3_MECHANICAL_Q_MAX, FR3_MECHANICAL_Q_MIN

    limits = JointLimits()
    assert limits.q_max == (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159)
    assert limits.q_min == (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159)
    assert np.all(np.array(limits.q_max) <= FR3_MECHANICAL_Q_MAX)
    assert np.all(np.array(limits.q_min) >= FR3_MECHANICAL_Q_MIN)
    q = np.array(limits.q_max) - 0.05  # 2.6937 on joint 1: a chunk towards 2.85 (legal for the datasheet) stops short
    p = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=8)), chunk(velocity=1.0), q=q, q_now=q)
    assert p.clamped and p.positions[-1, 0] == pytest.approx(2.7437 - 0.01)


def test_a_start_from_rest_is_stretched_to_the_acceleration_limit():
    """1.5 rad/s for one step from rest is 0.1 rad. The controller's cubic from rest through the point at the mean speed
    s = 0.1 / h starts at 4 s / h = 0.4 / h^2 rad/s^2 <= 10, so h >= 0.2 s; then it brakes from 0.5 rad/s at 10 rad/s^2
    in 0.05 s, 0.0125 rad further (the braking tail)."""
    p = plan(ChunkExecutor(ExecutorConfig(execute_steps=1)), chunk(h=1, velocity=1.5))
    np.testing.assert_allclose(p.positions[0], HOME + 0.1)  # the path is kept
    assert p.clamped and p.braking_tail and p.actions_executed == 1
    assert 0.2 <= p.times_s[0] <= 0.2 * 1.01 and p.times_s[1] - p.times_s[0] == pytest.approx(0.05, rel=0.02)
    np.testing.assert_allclose(p.positions[1], HOME + 0.1 + 0.0125, rtol=0.02)
    peak_v, peak_a = sampled_peaks(p)
    assert np.all(peak_a <= 10.0 * 1.01) and np.all(peak_v <= np.array(FR3_DQ_MAX))


def test_a_chunk_that_continues_the_running_motion_is_not_slowed():
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8))
    first = plan(executor, chunk(velocity=0.3))
    t = first.times_s[3]
    q, v = first.state_at(t)
    np.testing.assert_allclose(v, 0.3)
    now = int(t * 1e9)
    second = executor.plan(chunk(velocity=0.3), DT, "joint_velocity", 7, q, q, now, now)
    assert not second.clamped and second.braking_tail
    np.testing.assert_allclose(second.times_s[:8], (np.arange(8) + 1) * DT)


def test_speed_changes_inside_a_chunk_respect_the_acceleration_limit():
    """Sampled from the spline the controller runs: velocity and acceleration within the limits everywhere."""
    a = chunk(h=6, velocity=0.6)
    a[3:, :7] = -0.6  # a reversal: 1.2 rad/s of change within one step would be 18 rad/s^2
    p = plan(ChunkExecutor(ExecutorConfig(execute_steps=6)), a, q_now=HOME)
    peak_v, peak_a = sampled_peaks(p)
    assert np.all(peak_a <= 10.0 * 1.01) and np.all(peak_v <= np.array(FR3_DQ_MAX)) and p.clamped
    check_plan(p, JointLimits())


def test_droid_full_speed_stays_within_the_fr3_limits_on_the_controllers_spline():
    """Review finding: checked on segment means, a = 1 from rest reached 3.49 rad/s and 157 rad/s^2 on the spline."""
    for scale in (1.0, 0.3):
        p = plan(ChunkExecutor(ExecutorConfig(execute_steps=8, speed_scale=scale)), chunk(velocity=1.0),
                 kind="droid_joint_velocity")
        peak_v, peak_a = sampled_peaks(p)
        assert np.all(peak_v <= np.array(FR3_DQ_MAX) * scale * 1.001), (scale, peak_v)
        assert np.all(peak_a <= 10.0 * scale * 1.01), (scale, peak_a)


def test_speed_scale_stretches_time_and_keeps_the_path():
    """speed_scale 0.5: joint 1's 2.62 rad/s becomes 1.31; the same path, more time, every velocity within 1.31."""
    a = chunk(h=4, velocity=0.0)
    a[:, 0] = 2.0
    full = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=4)), a)
    half = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=4, speed_scale=0.5)), a)
    np.testing.assert_allclose(half.positions[:4], full.positions[:4])
    assert half.actions_end_s > 1.5 * full.actions_end_s
    assert sampled_peaks(half)[0][0] <= 1.31 * 1.001 and sampled_peaks(full)[0][0] <= 2.62 * 1.001
    check_plan(half, JointLimits(ddq_max=(1e4,) * 7).scaled(0.5))
    with pytest.raises(ValueError, match="speed_scale"):
        ExecutorConfig(speed_scale=0.0)
    with pytest.raises(ValueError, match="speed_scale"):
        ExecutorConfig(speed_scale=1.5)


def test_the_first_point_is_never_sooner_than_the_lead_time():
    """60 ms of inference leaves 6.7 ms to the first target: it is moved to 50 ms, the rest keeps its spacing."""
    p = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=3)), chunk(velocity=0.1), elapsed_ms=60)
    assert p.skipped == 0 and p.times_s[0] == pytest.approx(0.05)
    np.testing.assert_allclose(np.diff(p.times_s), DT)
    no_lead = plan(ChunkExecutor(ExecutorConfig(FAST, execute_steps=3, min_lead_time_s=0.0)), chunk(velocity=0.1),
                   elapsed_ms=60)
    assert no_lead.times_s[0] == pytest.approx(DT - 0.06)


def test_a_streamed_droid_step_moves_0_2_rad_times_a_from_the_measured_state():
    """Stream mode, DROID kind, limits wide enough: all-ones -> 0.2 rad per step on every joint, from q_now (not from
    the state the chunk was computed from), reached in 1.25 periods so the next step arrives while the controller still
    moves; a vector whose largest entry is 2 is halved first."""
    wide = JointLimits(dq_max=(10.0,) * 7, ddq_max=(1e4,) * 7)
    executor = ChunkExecutor(ExecutorConfig(wide, mode="stream"))
    q_now = HOME + 0.05
    step = executor.plan_step(np.ones(8), DT, "droid_joint_velocity", 7, q_now, now_ns=0)
    np.testing.assert_allclose(step.positions[0], q_now + 0.2)
    assert step.velocities is None and step.times_s[0] == pytest.approx(STEP_OVERLAP * DT) and step.gripper == 1.0
    a = np.zeros(8)
    a[0], a[1] = 2.0, 1.0  # scaled to (1.0, 0.5)
    step = executor.plan_step(a, DT, "droid_joint_velocity", 7, q_now, now_ns=int(DT * 1e9))
    np.testing.assert_allclose(step.positions[0][:2], q_now[:2] + np.array([0.2, 0.1]))
    np.testing.assert_allclose(step.positions[0][2:], q_now[2:])


def step_speed(step, q_now=HOME):
    return (step.positions[0] - q_now) / step.times_s[0]


def test_streamed_steps_respect_the_velocity_and_acceleration_limits():
    """a = 1 asks 0.2 rad per period on every joint: 3 rad/s, reached in 1.25 periods, 2.4 rad/s. From rest 10 rad/s^2
    allows 10 x 1.25 / 15 = 0.833 rad/s in the first step, then 0.833 more per step, up to 2.4 (within 2.62)."""
    executor = ChunkExecutor(ExecutorConfig(mode="stream"))
    speeds = []
    for k in range(5):
        step = executor.plan_step(np.ones(8), DT, "droid_joint_velocity", 7, HOME, now_ns=int(k * DT * 1e9))
        speeds.append(step_speed(step))
        check_plan(step, JointLimits())
    np.testing.assert_allclose(np.array(speeds)[:, 0], [1 / 1.2, 2 / 1.2, 2.4, 2.4, 2.4], rtol=1e-6)
    assert all(np.allclose(s, s[0]) for s in speeds)  # every joint the same speed: the direction is kept
    slow = ChunkExecutor(ExecutorConfig(mode="stream", speed_scale=0.25))
    for k in range(6):
        step = slow.plan_step(np.ones(8), DT, "droid_joint_velocity", 7, HOME, now_ns=int(k * DT * 1e9))
    np.testing.assert_allclose(step_speed(step), 0.25 * 2.62)  # joints 1-4 bind; 5-7 (faster limits) follow them


def test_speed_scale_keeps_the_direction_of_a_streamed_step():
    """Review finding: clipping each joint on its own turned (3, 1.5, 0, ...) rad/s into (0.79, 0.79, 0, ...) at
    speed_scale 0.3; scaled as a vector it stays (2 : 1)."""
    executor = ChunkExecutor(ExecutorConfig(mode="stream", speed_scale=0.3))
    a = np.zeros(8)
    a[0], a[1] = 1.0, 0.5
    for k in range(8):
        speed = step_speed(executor.plan_step(a, DT, "droid_joint_velocity", 7, HOME, now_ns=int(k * DT * 1e9)))
        assert speed[0] == pytest.approx(2 * speed[1]) and np.all(speed[2:7] == 0.0)
    assert speed[0] == pytest.approx(0.3 * 2.62)


def test_a_streamed_position_step_is_slowed_not_jumped_and_a_stop_follows_it():
    executor = ChunkExecutor(ExecutorConfig(mode="stream", max_start_jump_rad=1.0))
    a = np.append(HOME + np.array([0.5, 0, 0, 0, 0, 0, 0]), 0.0)
    step = executor.plan_step(a, DT, "joint_position", 7, HOME, now_ns=0)
    duration = STEP_OVERLAP * DT
    assert step.times_s[0] == pytest.approx(duration) and step.clamped  # from rest: 10 rad/s^2 x 1.25 periods
    assert step_speed(step)[0] == pytest.approx(10.0 * duration)
    stop = executor.stop(now_ns=int(duration / 2 * 1e9))  # halfway, moving at 0.833 rad/s
    np.testing.assert_allclose(stop.start[0], HOME[0] + 10.0 * duration ** 2 / 2, atol=1e-9)
    assert stop.times_s[0] == pytest.approx(10.0 * duration / 5.0, rel=1e-3)
    with pytest.raises(UnsafeChunk, match="max_start_jump_rad"):
        fast = ChunkExecutor(ExecutorConfig(FAST, mode="stream", max_start_jump_rad=0.05))  # 2.62 rad/s: 0.22 rad
        fast.plan_step(np.append(HOME + 1.5, 0.0), DT, "joint_position", 7, HOME, now_ns=0)


def test_check_plan_refuses_each_kind_of_unsafe_command():
    """The last line of defence, clause by clause: each command below breaks exactly one rule and is refused."""
    limits = JointLimits().scaled(0.5)  # 1.31 rad/s on joints 1-4, 5 rad/s^2
    q = HOME.copy()
    rest = np.zeros(7)

    def cubic(points, times, velocities=None, start_velocity=None):
        points = np.atleast_2d(points)
        velocities = np.zeros_like(points) if velocities is None else np.atleast_2d(velocities)
        return PlannedCommand(np.asarray(times, float), points, velocities, None, 0, False, 0, q, start_velocity)

    def step(target, duration, before=None):
        return PlannedCommand(np.array([duration]), np.atleast_2d(target), None, None, 0, False, 0, q, before)

    one = np.zeros(7)
    one[0] = 1.0
    good = cubic(q + 0.05 * one, [0.5])
    check_plan(good, limits)
    check_plan(step(q + 0.05 * one, 0.1), limits)
    cases = {
        "non-finite": cubic(np.full(7, np.nan), [0.5]),
        "strictly increase": cubic([q + 0.01 * one, q + 0.02 * one], [0.5, 0.5]),
        "leave the joint limits": cubic(np.where(one > 0, 2.75, q), [5.0]),
        "faster than the velocity limits": step(q + 0.2 * one, 0.1),  # 2 rad/s
        "changes the controller's velocity": step(q + 0.1 * one, 0.1, before=rest - one),  # -1 -> 1 rad/s in 0.1 s
        "do not end at zero": cubic(q + 0.05 * one, [0.5], velocities=0.1 * one),
        "spline through the planned points leaves": PlannedCommand(  # coasting at 1 rad/s past joint 1's limit
            np.array([1.0]), np.atleast_2d(np.where(one > 0, 2.70, q)), np.zeros((1, 7)), None, 0, False, 0,
            np.where(one > 0, 2.70, q), one),
        "exceeds the velocity or acceleration": cubic(q + 0.05 * one, [0.05]),  # 0.05 rad from rest in 50 ms
    }
    for message, plan in cases.items():
        with pytest.raises(UnsafeChunk, match=message):
            check_plan(plan, limits)
