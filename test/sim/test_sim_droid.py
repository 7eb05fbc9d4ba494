"""DROID action space: validation, DROID's scaling, conversion to a one-point trajectory and gripper widths."""

import numpy as np
import pytest

from retain_ros.errors import ConfigError
from retain_ros.sim.droid import (ACTION_DIM, action_to_trajectory, gripper_position_to_width, validate_action,
                                  width_to_gripper_position)
from retain_ros.sim.physics import HOME_Q
from retain_ros.topics import FR3_ARM_JOINTS


def test_action_is_seven_velocities_and_a_gripper_position():
    assert ACTION_DIM == 8


@pytest.mark.parametrize("bad", [np.zeros(7), np.zeros(9), np.zeros((2, 8)), np.array([np.nan] * 8)])
def test_malformed_actions_are_refused(bad):
    with pytest.raises(ConfigError):
        validate_action(bad)


def test_the_whole_arm_vector_is_scaled_so_its_largest_entry_is_one():
    """droid/robot_ik/robot_ik_solver.py scales the 7-vector as a whole: directions are kept, not clipped per joint."""
    a = validate_action(np.array([4.0, -2.0, 1.0, 0, 0, 0, 0.5, 3.0]))
    np.testing.assert_allclose(a[:7], [1.0, -0.5, 0.25, 0, 0, 0, 0.125])
    assert a[7] == 1.0
    inside = np.array([0.9, -0.3, 0, 0, 0, 0, 0.1, 0.0])
    np.testing.assert_array_equal(validate_action(inside), inside)


def test_action_moves_the_target_0_2_rad_times_a_from_the_measured_position():
    a = validate_action(np.array([0.3, 0, 0, 0, 0, 0, -0.15, 0.5]))
    t = action_to_trajectory(a, HOME_Q, 1 / 15)
    assert t.joint_names == FR3_ARM_JOINTS and len(t.points) == 1 and t.start_time_s is None
    np.testing.assert_allclose(t.points[0].positions - HOME_Q, 0.2 * a[:7])
    assert t.points[0].time_from_start_s == pytest.approx(1 / 15)
    assert t.points[0].velocities is None  # positions only -> linear, as streamed DROID commands


def test_gripper_mapping_round_trips():
    assert gripper_position_to_width(0.0) == pytest.approx(0.08)
    assert gripper_position_to_width(1.0) == pytest.approx(0.0)
    for g in (0.0, 0.25, 0.7, 1.0):
        assert width_to_gripper_position(gripper_position_to_width(g)) == pytest.approx(g)
