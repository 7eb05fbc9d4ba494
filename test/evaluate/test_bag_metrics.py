"""Metrics and executed-action series of `retain-eval bag`, checked against hand computations."""

import numpy as np
import pytest

from retain_ros.evaluate.metrics import ErrorStack, aggregate, bootstrap
from retain_ros.evaluate.targets import ACTION, COMMAND, Series, Targets
from retain_ros.policy.interface import ActionChunk, ActionSpace

NAN = np.nan


def hand_stack():
    """Two observations, horizon 2, two joints + gripper; the second observation's step 1 is unknown."""
    predictions = np.array([[[1, 2, 0.9], [0, 0, 0.2]],
                            [[0, 0, 0.6], [1, 1, 0.7]]], dtype=float)
    targets = np.array([[[0, 0, 1.0], [1, 1, 0.0]],
                        [[0, 1, 0.0], [NAN, NAN, NAN]]], dtype=float)
    return ErrorStack(predictions, targets, np.array([0, 10]))


def test_pooled_per_step_per_joint_and_gripper_metrics_match_the_hand_computation():
    # arm errors: obs0 step0 (1, 2), obs0 step1 (-1, -1), obs1 step0 (0, -1); obs1 step1 unknown
    s = hand_stack().summary()
    assert s["mse"] == pytest.approx((1 + 4 + 1 + 1 + 0 + 1) / 6)
    assert s["mae"] == pytest.approx((1 + 2 + 1 + 1 + 0 + 1) / 6)
    assert s["entries"] == 6
    # gripper: 0.9 vs 1 agree, 0.2 vs 0 agree, 0.6 vs 0 disagree
    assert s["gripper_accuracy"] == pytest.approx(2 / 3)
    assert s["per_step_mse"] == pytest.approx([(1 + 4 + 0 + 1) / 4, (1 + 1) / 2])
    assert s["per_joint_mse"] == pytest.approx([(1 + 1 + 0) / 3, (4 + 1 + 1) / 3])
    np.testing.assert_allclose(s["per_step_joint_mae"], [[0.5, 1.5], [1.0, 1.0]])
    assert s["gripper_accuracy_per_step"] == pytest.approx([0.5, 1.0])


def test_aggregate_pools_episodes_and_bootstraps_over_them():
    a, b = hand_stack(), hand_stack()
    b.predictions = b.predictions + np.array([1.0, 1.0, 0.0])  # second episode: every arm error shifted by +1
    agg = aggregate([a, b], resamples=200)
    diffs_b = np.array([2, 3, 0, 0, 1, 0])
    assert agg["mse"] == pytest.approx((8 + (diffs_b ** 2).sum()) / 12)
    assert agg["bootstrap_unit"] == "episode" and agg["observations"] == 4
    lo, hi = agg["mse_ci"]
    assert lo == pytest.approx(8 / 6) and hi == pytest.approx((diffs_b ** 2).sum() / 6)  # all-a .. all-b resamples
    single = aggregate([a], resamples=200)
    assert single["bootstrap_unit"] == "observation"
    assert single["mse_ci"][0] <= single["mse"] <= single["mse_ci"][1]


def test_bootstrap_of_identical_units_is_degenerate_and_of_nothing_is_undefined():
    units = np.tile([[4.0, 2.0, 2.0, 1.0, 2.0]], (5, 1))
    ci = bootstrap(units, resamples=50)
    assert ci["mse_ci"] == pytest.approx([2.0, 2.0]) and ci["gripper_accuracy_ci"] == pytest.approx([0.5, 0.5])
    assert bootstrap(np.zeros((0, 5)))["mse_ci"] is None
    assert aggregate([])["mse"] is None


def test_series_modes():
    t = np.array([0, 100, 200])
    v = np.array([[0.0], [1.0], [4.0]])
    near = Series(t, v, "nearest", 20).at([0, 90, 150, 260])
    assert near[:2, 0].tolist() == [0.0, 1.0] and np.isnan(near[2:, 0]).all()
    lin = Series(t, v, "linear", 100).at([50, 100, 150, 250, -1])
    assert lin[:3, 0].tolist() == [0.5, 1.0, 2.5] and np.isnan(lin[3:, 0]).all()
    hold = Series(t, v, "hold", 0).at([-5, 150, 900])
    assert np.isnan(hold[0, 0]) and hold[1:, 0].tolist() == [1.0, 4.0]


def test_targets_compare_velocities_directly_and_integrate_them_against_positions():
    space = ActionSpace(joint_names=("a", "b"), dim=3, gripper_index=2)
    chunk = ActionChunk(np.array([[1.0, -1.0, 1.0], [1.0, 0.0, 0.0]], np.float32), 0.1, space, 0)
    empty = Series(np.zeros(0, np.int64), np.zeros((0, 1)), "hold", 0)
    arm = Series(np.array([0, 10**8, 2 * 10**8]), np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), "nearest",
                 5 * 10**7)
    action = Targets(ACTION, arm, empty, 0.1)
    assert action.prediction(chunk, np.zeros(2)).tolist() == [[1.0, -1.0, 1.0], [1.0, 0.0, 0.0]]
    assert action.target(0, 2)[:, :2].tolist() == [[0.0, 0.0], [1.0, 1.0]]  # steps at t + 0, t + dt
    command = Targets(COMMAND, Series(arm.times_ns, arm.values, "linear", 10**9), empty, 0.1)
    np.testing.assert_allclose(command.prediction(chunk, np.array([0.5, 0.5])),
                               [[0.7, 0.3, 1.0], [0.9, 0.3, 0.0]])  # DROID: q + 0.2 rad * cumsum(a)
    rad_s = ActionChunk(chunk.actions, 0.1, ActionSpace(kind="joint_velocity", joint_names=("a", "b"), dim=3,
                                                        gripper_index=2), 0)
    np.testing.assert_allclose(command.prediction(rad_s, np.array([0.5, 0.5])),
                               [[0.6, 0.4, 1.0], [0.7, 0.4, 0.0]])  # rad/s: q + dt * cumsum(v)
    assert command.target(0, 2)[:, :2].tolist() == [[1.0, 1.0], [2.0, 2.0]]  # steps at t + dt, t + 2 dt
