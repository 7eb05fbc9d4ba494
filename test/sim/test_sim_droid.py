"""DROID action space: validation, clipping, conversion to a one-point trajectory and gripper widths."""

import numpy as np
import pytest

from retain_ros.errors import ConfigError
from retain_ros.sim.droid import (ACTION_DIM, action_to_trajectory, gripper_position_to_width, validate_action,
                                  width_to_gripper_position)
from retain_ros.sim.physics import DQ_MAX, HOME_Q
from retain_ros.topics import FR3_ARM_JOINTS


def test_action_is_seven_velocities_and_a_gripper_position():
    assert ACTION_DIM == 8


@pytest.mark.parametrize("bad", [np.zeros(7), np.zeros(9), np.zeros((2, 8)), np.array([np.nan] * 8)])
def test_malformed_actions_are_refused(bad):
    with pytest.raises(ConfigError):
        validate_action(bad)


def test_actions_are_clipped_to_the_fr3_limits():
    a = validate_action(np.array([10.0] * 7 + [3.0]))
    np.testing.assert_allclose(a[:7], DQ_MAX)
    assert a[7] == 1.0


def test_velocity_becomes_a_position_target_one_period_ahead():
    a = validate_action(np.array([0.3, 0, 0, 0, 0, 0, -0.15, 0.5]))
    t = action_to_trajectory(a, HOME_Q, 1 / 15)
    assert t.joint_names == FR3_ARM_JOINTS and len(t.points) == 1 and t.start_time_s is None
    np.testing.assert_allclose(t.points[0].positions - HOME_Q, a[:7] / 15)
    assert t.points[0].time_from_start_s == pytest.approx(1 / 15)
    assert t.points[0].velocities is None  # positions only -> linear, as streamed DROID commands


def test_gripper_mapping_round_trips():
    assert gripper_position_to_width(0.0) == pytest.approx(0.08)
    assert gripper_position_to_width(1.0) == pytest.approx(0.0)
    for g in (0.0, 0.25, 0.7, 1.0):
        assert width_to_gripper_position(gripper_position_to_width(g)) == pytest.approx(g)
