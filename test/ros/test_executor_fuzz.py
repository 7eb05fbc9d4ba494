"""Seeded adversarial sequences through the executor, with every limit asserted on the controller's motion.

Each sequence: a random speed_scale in [0.1, 1], chunk or stream mode, a start anywhere inside the limits (often next to
one), then chunks with random velocities and positions (reversals, far targets), stops and resumes at random moments,
and joint states up to 5 ms old. The arm follows the controller's set-point exactly; the controller is the simulator's
JTC model, anchored at the arm's true state (controller_truth.py). A chunk the executor refuses is answered with a stop,
as the node does. 10,000 sequences in four seeded batches.
"""

from __future__ import annotations

import numpy as np
import pytest
from controller_truth import FollowingArm, violations

from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig, JointLimits, MeasuredState, UnsafeChunk

DT = 1.0 / 15.0
LIMITS = JointLimits()
Q_MIN, Q_MAX = np.array(LIMITS.q_min), np.array(LIMITS.q_max)
BATCHES, PER_BATCH = 4, 2500


def random_start(rng: np.random.Generator) -> np.ndarray:
    q = rng.uniform(Q_MIN + 0.02, Q_MAX - 0.02)
    near = rng.random(7) < 0.3  # often right next to a limit
    edge = np.where(rng.random(7) < 0.5, Q_MIN + rng.uniform(0.011, 0.06, 7), Q_MAX - rng.uniform(0.011, 0.06, 7))
    return np.where(near, edge, q)


def random_chunk(rng: np.random.Generator, q: np.ndarray) -> tuple[np.ndarray, str]:
    kind = rng.choice(["joint_velocity", "droid_joint_velocity", "joint_position"])
    h = int(rng.integers(1, 11))
    actions = np.zeros((h, 8))
    if kind == "joint_position":
        actions[:, :7] = q + np.cumsum(rng.normal(0.0, 0.05, (h, 7)), axis=0)
    else:
        scale = 1.0 if kind == "droid_joint_velocity" else 3.0
        actions[:, :7] = rng.uniform(-1.2, 1.2, (h, 7)) * scale
        if rng.random() < 0.5:  # a reversal inside the chunk
            actions[h // 2:, :7] *= -1
    actions[:, 7] = rng.random()
    return actions, str(kind)


def run_sequence(seed: int) -> list[str]:
    """One sequence; returns what broke a limit (empty: nothing)."""
    rng = np.random.default_rng(seed)
    scale = float(rng.uniform(0.1, 1.0))
    mode = "stream" if rng.random() < 0.4 else "chunk"
    executor = ChunkExecutor(ExecutorConfig(execute_steps=int(rng.integers(1, 9)), speed_scale=scale, mode=mode))
    limits = LIMITS.scaled(scale)
    arm = FollowingArm(random_start(rng))
    t, broken = 0.0, []
    actions, kind = random_chunk(rng, arm.state(0.0)[0])
    for event in range(6):
        age = float(rng.uniform(0.0, 0.005))
        if arm.sent_at is not None and t - age < arm.sent_at:  # measured before the last command: not modelled
            age = 0.0
        q, v = arm.state(max(0.0, t - age))
        measured = MeasuredState(q, v if rng.random() < 0.8 else None, age)
        now = int(round(t * 1e9))
        before = arm.jtc.sample_many(np.array([t]))[1][0]
        roll = rng.random()
        try:
            if roll < 0.2 and arm.sent_at is not None:
                plan = executor.stop(now, measured)
            elif mode == "stream":
                plan = executor.plan_step(actions[event % len(actions)], DT, kind, 7, measured, now)
            else:
                if rng.random() < 0.3:
                    actions, kind = random_chunk(rng, q)
                plan = executor.plan(actions, DT, kind, 7, q, measured, now - int(rng.uniform(0, 0.08) * 1e9), now)
        except UnsafeChunk:
            plan = executor.stop(now, measured)
        if plan is None:
            t += float(rng.uniform(0.02, 0.3))
            continue
        arm.send(plan, t)
        if plan.is_stop and plan.note:  # a stop from a state the plans made must keep every scaled limit
            broken.append(f"seed {seed}: stop could not keep the limits: {plan.note}")
        gap = float(rng.uniform(0.02, 1.2 * plan.duration_s + 0.05))
        end = t + max(gap, plan.duration_s if rng.random() < 0.2 else 0.0)
        linear = plan.velocities is None
        broken += [f"seed {seed} event {event} ({mode}, scale {scale:.2f}): {b}"
                   for b in violations(arm, end, limits, linear=linear, before=before, samples=120)]
        t = t + gap
    return broken


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(BATCHES))
def test_no_command_leaves_the_limits_on_the_controllers_spline(batch):
    broken = []
    for seed in range(batch * PER_BATCH, (batch + 1) * PER_BATCH):
        broken += run_sequence(seed)
    assert broken == [], f"{len(broken)} violations, first: {broken[:5]}"
