"""The joint trajectory controller keeps joint_trajectory_controller semantics (Jazzy defaults)."""

import numpy as np
import pytest

from retain_ros.sim.controller import JointTrajectory, JointTrajectoryController, TrajectoryPoint, TrajectoryRejected

NAMES = ("a", "b")
LOW, HIGH = np.array([-3.0, -3.0]), np.array([3.0, 3.0])


@pytest.fixture
def jtc():
    c = JointTrajectoryController(NAMES, LOW, HIGH)
    c.hold(np.zeros(2))
    return c


def traj(*points, start=None, names=NAMES):
    return JointTrajectory(names, tuple(points), start)


def test_linear_interpolation_is_anchored_at_the_measured_state(jtc):
    jtc.command(traj(TrajectoryPoint(np.array([1.0, 2.0]), 1.0)), 10.0, np.array([0.2, 0.0]), np.zeros(2))
    q, dq = jtc.sample(10.5)
    np.testing.assert_allclose(q, [0.6, 1.0])
    np.testing.assert_allclose(dq, [0.8, 2.0])
    np.testing.assert_allclose(jtc.sample(11.5)[0], [1.0, 2.0])  # holds the last point
    np.testing.assert_allclose(jtc.sample(11.5)[1], [0.0, 0.0])


def test_cubic_interpolation_matches_end_points_and_velocities(jtc):
    points = (TrajectoryPoint(np.array([1.0, 0.0]), 1.0, np.array([0.5, 0.0])),
              TrajectoryPoint(np.array([2.0, 0.0]), 2.0, np.zeros(2)))
    jtc.command(traj(*points), 0.0, np.zeros(2), np.array([0.3, 0.0]))
    q, dq = jtc.sample(1e-9)
    np.testing.assert_allclose(q, [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(dq, [0.3, 0.0], atol=1e-6)
    q, dq = jtc.sample(1.0)
    np.testing.assert_allclose(q, [1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(dq, [0.5, 0.0], atol=1e-6)


def test_new_trajectory_replaces_the_running_one(jtc):
    jtc.command(traj(TrajectoryPoint(np.array([1.0, 1.0]), 1.0)), 0.0, np.zeros(2), np.zeros(2))
    jtc.command(traj(TrajectoryPoint(np.array([-1.0, -1.0]), 1.0)), 0.5, np.array([0.4, 0.4]), np.zeros(2))
    np.testing.assert_allclose(jtc.sample(1.0)[0], [-0.3, -0.3])
    np.testing.assert_allclose(jtc.sample(2.0)[0], [-1.0, -1.0])


def test_joint_names_in_another_order_are_reordered(jtc):
    jtc.command(traj(TrajectoryPoint(np.array([2.0, 1.0]), 1.0), names=("b", "a")), 0.0, np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(jtc.sample(1.0)[0], [1.0, 2.0])


def test_set_points_are_clipped_to_the_joint_limits(jtc):
    jtc.command(traj(TrajectoryPoint(np.array([9.0, 0.0]), 1.0)), 0.0, np.zeros(2), np.zeros(2))
    assert jtc.sample(5.0)[0][0] == pytest.approx(3.0)


@pytest.mark.parametrize("bad, match", [
    (traj(), "no points"),
    (traj(TrajectoryPoint(np.ones(2), 1.0), TrajectoryPoint(np.ones(2), 1.0)), "strictly increase"),
    (traj(TrajectoryPoint(np.ones(2), 1.0, np.ones(2))), "nonzero velocities"),
    (traj(TrajectoryPoint(np.ones(2), 1.0), names=("a", "c")), "unknown"),
    (traj(TrajectoryPoint(np.ones(3), 1.0)), "finite numbers"),
    (traj(TrajectoryPoint(np.array([np.nan, 0.0]), 1.0)), "finite numbers"),
    (traj(TrajectoryPoint(np.ones(2), 1.0), start=2.0), "ends in the past"),
])
def test_invalid_trajectories_are_rejected_and_the_old_one_kept(jtc, bad, match):
    jtc.command(traj(TrajectoryPoint(np.array([1.0, 1.0]), 1.0)), 0.0, np.zeros(2), np.zeros(2))
    with pytest.raises(TrajectoryRejected, match=match):
        jtc.command(bad, 5.0, np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(jtc.sample(0.5)[0], [0.5, 0.5])


def test_rejection_is_a_config_error():
    assert issubclass(TrajectoryRejected, ValueError)
