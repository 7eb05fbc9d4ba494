"""The DROID action space and its conversion into controller commands.

A DROID action is 8 numbers at 15 Hz: 7 normalised joint velocities a (fr3_joint1..7; see retain_ros/droid_action.py)
and 1 absolute gripper position in [0, 1] (0 = open, 1 = closed). It is executed as DROID executes it: the whole
7-vector is scaled so that its largest entry is at most 1, and a one-point JointTrajectory reaches
q_measured + 0.2 rad * a after one period (linear interpolation, anchored at the measured state), plus a gripper width
command.
"""

from __future__ import annotations

import numpy as np

from retain_ros.droid_action import DROID_JOINT_VELOCITY, droid_scale, integrate_velocities
from retain_ros.errors import ConfigError
from retain_ros.gripper import gripper_width, width_to_position
from retain_ros.sim.controller import JointTrajectory, TrajectoryPoint
from retain_ros.sim.physics import ARM_DOF, CONTROL_RATE_HZ, DQ_MAX, GRIPPER_MAX_WIDTH_M, Q_MAX, Q_MIN
from retain_ros.topics import FR3_ARM_JOINTS

__all__ = ["ACTION_DIM", "ACTION_NAMES", "CONTROL_RATE_HZ", "GRIPPER_INDEX", "action_to_trajectory",
           "gripper_position_to_width", "validate_action", "width_to_gripper_position"]
ACTION_DIM = ARM_DOF + 1
GRIPPER_INDEX = ARM_DOF
ACTION_NAMES = tuple(f"{j}_velocity" for j in FR3_ARM_JOINTS) + ("gripper_position",)


def validate_action(action: np.ndarray) -> np.ndarray:
    """Check an action's shape and values; scale the arm part as DROID does and clip the gripper to [0, 1].

    Args:
        action: 8 numbers: 7 normalised joint velocities, 1 gripper position (0 open .. 1 closed).

    Returns:
        The action as executed (float64 copy): arm part scaled so that its largest entry is at most 1.

    Raises:
        ConfigError: wrong shape or non-finite values.
    """
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape != (ACTION_DIM,):
        raise ConfigError(
            f"a DROID action has {ACTION_DIM} numbers (7 joint velocities + gripper position), got shape "
            f"{np.shape(action)}; check the policy's action dimension"
        )
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"action contains non-finite values {a.tolist()}; the policy produced NaN or inf")
    out = a.copy()
    out[:ARM_DOF] = droid_scale(a[:ARM_DOF])
    out[GRIPPER_INDEX] = np.clip(a[GRIPPER_INDEX], 0.0, 1.0)
    return out


def action_to_trajectory(action: np.ndarray, q_measured: np.ndarray,
                         period_s: float = 1.0 / CONTROL_RATE_HZ) -> JointTrajectory:
    """Turn the velocity part of a (validated) DROID action into a one-point trajectory.

    Args:
        action: a validated DROID action.
        q_measured: measured arm joint positions (rad).
        period_s: the control period; the point is reached after it.

    Returns:
        A JointTrajectory for fr3_joint1..7 that starts now (positions only -> linear interpolation).
    """
    targets, _ = integrate_velocities(q_measured, action[None, :ARM_DOF], DROID_JOINT_VELOCITY, period_s, DQ_MAX)
    target = np.clip(targets[0], Q_MIN, Q_MAX)
    return JointTrajectory(FR3_ARM_JOINTS, (TrajectoryPoint(target, period_s),))


def gripper_position_to_width(position: float) -> float:
    """Map a DROID gripper position (0 open .. 1 closed) to this gripper's finger opening in metres."""
    return gripper_width(position, GRIPPER_MAX_WIDTH_M)


def width_to_gripper_position(width_m: float) -> float:
    """Map this gripper's finger opening in metres to a DROID gripper position (0 open .. 1 closed)."""
    return width_to_position(width_m, GRIPPER_MAX_WIDTH_M)
