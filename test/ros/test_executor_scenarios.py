"""Four ways a command could leave the FR3's limits although the planner's own model of the arm said it would not.

Each scenario drives the executor as the node does and samples what the controller (the simulator's JTC model,
anchored at the arm's true state) makes of the commands: the limits are asserted on that motion, not on the plan.
FR3 limits x speed_scale; joint 6's lower position limit is 0.5445 rad.
"""

from __future__ import annotations

import numpy as np
import pytest

from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig, JointLimits, UnsafeChunk
from controller_truth import FollowingArm, violations

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
DT = 1.0 / 15.0


def velocity_chunk(velocities: np.ndarray, h: int = 10) -> np.ndarray:
    a = np.zeros((h, 8))
    a[:, :7] = velocities
    return a


def plan_at(executor: ChunkExecutor, arm: FollowingArm, actions: np.ndarray, t_s: float, kind="joint_velocity"):
    """The node's chunk-mode step at `t_s`: observation and command at once, from the measured joint positions."""
    q, _ = arm.state(t_s)
    plan = executor.plan(actions, DT, kind, 7, q, q, int(t_s * 1e9), int(t_s * 1e9))
    arm.send(plan, t_s)
    return plan


@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_a_chunk_after_a_stop_starts_from_the_decelerating_arm_not_from_rest(scale):
    """Joint 1 moving, a stale stream stops it, commanding resumes while it still moves: the spline from its real
    velocity must stay within the acceleration limit (planned from rest it reached 4-5x the limit)."""
    limits = JointLimits().scaled(scale)
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8, speed_scale=scale))
    arm = FollowingArm(HOME)
    v = np.zeros(7)
    v[0] = limits.dq_max[0]
    t = 0.0
    for _ in range(2):  # up to speed
        plan = plan_at(executor, arm, velocity_chunk(v), t)
        t += plan.actions_end_s * 0.75
    speed = arm.state(t)[1][0]
    assert speed > 0.3 * v[0]
    stop = executor.stop(int(t * 1e9))
    arm.send(stop, t)
    assert violations(arm, t + stop.duration_s, limits) == []
    t += 0.4 * stop.duration_s
    assert arm.state(t)[1][0] > 0.3 * speed  # still moving when commanding resumes
    plan = plan_at(executor, arm, velocity_chunk(v), t)
    assert violations(arm, t + plan.duration_s, limits) == []


def test_the_first_segment_never_overshoots_a_position_limit():
    """Joint 6 moving at -0.48 rad/s towards its lower limit 0.5445, found 28 mrad above it (nearer than the plan
    thought: a tracking error, a push); the next chunk holds joint 6 while joint 1 reverses, which needs a first segment
    of 0.64 s: coasting through it, the cubic went 17 mrad past the limit. Now the chunk is refused (it cannot be timed
    from that state inside the limits) and the stop sent instead brakes within the limit, harder than speed_scale
    allows (the state leaves no choice) but within the arm's own acceleration limit."""
    scale = 0.3
    limits = JointLimits().scaled(scale)
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8, speed_scale=scale))
    start = HOME.copy()
    start[5] = 0.9
    arm = FollowingArm(start)
    v = np.zeros(7)
    v[0], v[5] = limits.dq_max[0], -limits.dq_max[5]
    first = plan_at(executor, arm, velocity_chunk(v), 0.0)
    t = first.actions_end_s * 0.4
    q, dq = arm.state(t)
    assert dq[5] < -0.45 and dq[0] > 0.25
    measured = q.copy()
    measured[5] = 0.5445 + 0.028
    arm.push(t, measured, dq)
    reverse = np.zeros(7)
    reverse[0] = -v[0]
    now = int(t * 1e9)
    try:
        plan = executor.plan(velocity_chunk(reverse), DT, "joint_velocity", 7, measured, measured, now, now)
    except UnsafeChunk as exc:
        assert "cannot come to rest inside the position limits" in str(exc)
    else:
        arm.send(plan, t)
        assert violations(arm, t + plan.duration_s, limits) == []
    stop = executor.stop(now, measured)
    arm.send(stop, t)
    assert violations(arm, t + stop.duration_s, JointLimits()) == []
    assert stop.positions[0, 5] >= 0.5445


@pytest.mark.parametrize("scale, speed", [(1.0, 1.0), (1.0, 2.62), (0.5, 1.0)])
def test_a_stop_never_raises_near_a_position_limit(scale, speed):
    """Joint 1 runs towards its upper limit, 0.6 rad away (the chunk's targets are clamped there and the plan brakes at
    up to the scaled limit); a stop at any moment must still come (at speed_scale 1, 1 rad/s, 86-90 % into the plan,
    its 5 rad/s^2 did not fit the room left, its target was clipped and it raised) and keep the limits the plan kept."""
    limits, stops = JointLimits(), []
    for fraction in np.linspace(0.02, 0.98, 49):
        executor = ChunkExecutor(ExecutorConfig(execute_steps=8, speed_scale=scale))
        q0 = HOME.copy()
        q0[0] = limits.q_max[0] - 0.6
        arm = FollowingArm(q0)
        v = np.zeros(7)
        v[0] = speed
        plan = plan_at(executor, arm, velocity_chunk(v), 0.0)
        t = plan.duration_s * fraction
        stop = executor.stop(int(t * 1e9))
        assert stop is not None
        arm.send(stop, t)
        assert violations(arm, t + stop.duration_s, limits.scaled(scale)) == [], fraction
        stops.append(stop)
    assert [s.note for s in stops] == [""] * len(stops)  # none had to break a scaled limit


def test_a_streamed_step_after_a_fast_inference_ramps_from_rest():
    """Stream mode at speed_scale 0.3: the chunk's steps are used up, the next chunk is inferred in 30 ms; by then the
    controller has finished the last step and holds (its set-point velocity is 0). The next step may change that by the
    acceleration limit x its duration only (it jumped 0 -> 0.786 rad/s, when the ramp allowed 0.2)."""
    scale = 0.3
    limits = JointLimits().scaled(scale)
    executor = ChunkExecutor(ExecutorConfig(mode="stream", speed_scale=scale))
    arm = FollowingArm(HOME)
    action = np.zeros(8)
    action[0] = 1.0  # DROID a = 1 on joint 1
    t, before = 0.0, np.zeros(7)
    for k in range(12):
        q, _ = arm.state(t)
        step = executor.plan_step(action, DT, "droid_joint_velocity", 7, q, int(t * 1e9))
        before = arm.jtc.sample_many(np.array([t]))[1][0]  # the set-point velocity the step replaces
        arm.send(step, t)
        assert violations(arm, t + DT, limits, linear=True, before=before) == [], k
        t += DT + (0.03 if k % 4 == 3 else 0.0)  # every 4th step: a 30 ms inference before the next
