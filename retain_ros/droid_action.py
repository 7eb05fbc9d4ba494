"""DROID's joint-velocity action convention, defined once (torch-free, shared by sim, policy, node and evaluation).

droid/robot_ik/robot_ik_solver.py `joint_velocity_to_delta`: an action's 7 arm numbers a are normalised; the whole
vector is scaled so that its largest entry is at most 1, then multiplied by max_joint_delta = 0.2 rad; each 15 Hz step
the robot's joint target is the MEASURED position plus that delta (droid/franka/robot.py). So a = 1 asks for 0.2 rad
per 1/15 s (3 rad/s nominal). Other policies use rad/s ('joint_velocity') or absolute positions ('joint_position').
"""

from __future__ import annotations

import numpy as np

from retain_ros.errors import ConfigError

DROID_JOINT_VELOCITY = "droid_joint_velocity"
JOINT_VELOCITY = "joint_velocity"
JOINT_POSITION = "joint_position"
ACTION_KINDS = (DROID_JOINT_VELOCITY, JOINT_VELOCITY, JOINT_POSITION)
VELOCITY_KINDS = (DROID_JOINT_VELOCITY, JOINT_VELOCITY)
DROID_DT_S = 1.0 / 15.0
DROID_MAX_JOINT_DELTA_RAD = 0.2  # droid/robot_ik/robot_ik_solver.py: max_joint_delta


def droid_scale(arm: np.ndarray) -> np.ndarray:
    """Scale each normalised 7-vector (last axis) so that its largest entry is at most 1, as DROID does."""
    arm = np.asarray(arm, dtype=np.float64)
    peak = np.max(np.abs(arm), axis=-1, keepdims=True)
    return arm / np.maximum(peak, 1.0)


def arm_velocities_rad_s(arm: np.ndarray, kind: str, dt_s: float) -> np.ndarray:
    """The arm part of velocity actions in rad/s: DROID's normalised a -> 0.2 rad * a per period, rad/s as given.

    Args:
        arm: (..., J) arm part of one or more actions.
        kind: DROID_JOINT_VELOCITY or JOINT_VELOCITY.
        dt_s: the control period the actions are executed at (DROID: 1/15 s).

    Raises:
        ConfigError: `kind` is not a velocity kind.
    """
    if kind == DROID_JOINT_VELOCITY:
        return droid_scale(arm) * (DROID_MAX_JOINT_DELTA_RAD / dt_s)
    if kind == JOINT_VELOCITY:
        return np.asarray(arm, dtype=np.float64)
    raise ConfigError(f"action kind '{kind}' is not a velocity; use one of {', '.join(VELOCITY_KINDS)}")


def integrate_velocities(q_start: np.ndarray, arm: np.ndarray, kind: str, dt_s: float,
                         dq_max: np.ndarray) -> tuple[np.ndarray, bool]:
    """Joint targets of consecutive velocity actions: each clamped to +-dq_max, held for dt_s, summed from q_start.

    The one integration the simulator's DROID interface (one action) and the node's chunk executor (a chunk) share.

    Args:
        q_start: (J,) joint positions the first action starts from (rad).
        arm: (H, J) arm part of H velocity actions.
        kind: DROID_JOINT_VELOCITY or JOINT_VELOCITY.
        dt_s: time each action lasts (s).
        dq_max: (J,) velocity limits (rad/s).

    Returns:
        (H, J) targets (rad) and whether any velocity was clamped.
    """
    requested = arm_velocities_rad_s(np.atleast_2d(arm), kind, dt_s)
    velocities = np.clip(requested, -np.asarray(dq_max), np.asarray(dq_max))
    clamped = bool((velocities != requested).any())
    return np.asarray(q_start, dtype=np.float64) + np.cumsum(velocities * dt_s, axis=0), clamped


def rad_s_to_droid(velocities: np.ndarray, dt_s: float = DROID_DT_S) -> np.ndarray:
    """Joint velocities in rad/s -> DROID's normalised a (the inverse of `arm_velocities_rad_s` inside [-1, 1])."""
    return np.asarray(velocities, dtype=np.float64) * (dt_s / DROID_MAX_JOINT_DELTA_RAD)
