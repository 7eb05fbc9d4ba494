"""Scripted expert: subgoals for the tool centre point, tracked by resolved-rate IK through MuJoCo's Jacobian.

The expert reads the true simulator state (it is a demonstrator, not a policy) and emits DROID actions: joint
velocities from damped least squares with a null-space pull towards the home posture, expressed in DROID's normalised
convention (retain_ros/droid_action.py) and kept inside its [-1, 1] action space, and a gripper position.
Task-level plans are lists of `Subgoal`s built from the `pick`, `place` and `push` primitives below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from retain_ros.droid_action import droid_scale, rad_s_to_droid
from retain_ros.sim.droid import ACTION_DIM, GRIPPER_INDEX
from retain_ros.sim.physics import CONTROL_RATE_HZ, CUBE_HALF_SIZE_M, DQ_MAX, HOME_Q, TabletopPhysics

log = logging.getLogger(__name__)

Target = Callable[[TabletopPhysics], tuple[np.ndarray, float]]
SAFE_Z_M = 0.12  # TCP height for moving over objects
RELEASE_GRIPPER = 0.35  # open just enough (5.2 cm) to let go, so fingers clear neighbouring cubes
GRASP_Z_M = 0.026  # TCP height when grasping a cube resting on the table (pads clear the table by 3 mm)
PUSH_Z_M = 0.03  # TCP height when pushing: pads touch the cube's upper half and clear the table
PAD_OFFSET_M = CUBE_HALF_SIZE_M + 0.012  # TCP to cube centre when closed fingers touch a cube face
TOP_DOWN = np.diag([1.0, -1.0, -1.0])  # tool frame pointing down with yaw 0 (the home orientation)


@dataclass(frozen=True)
class Subgoal:
    """One step of a plan: bring the TCP to a pose with the gripper at a position.

    Attributes:
        target: returns (TCP position m, yaw rad); evaluated when the subgoal starts, or every step if `dynamic`.
        gripper: DROID gripper position to command (0 open .. 1 closed).
        tol_m: position tolerance that completes the subgoal.
        min_steps: control steps to spend at least (e.g. for the gripper to close).
        max_steps: control steps after which the plan moves on regardless.
        max_speed_m_s: TCP speed limit.
        dynamic: re-evaluate `target` every step (pushing).
        done: optional extra completion test.
        label: name for logs.
    """

    target: Target
    gripper: float
    tol_m: float = 0.01
    min_steps: int = 0
    max_steps: int = 60
    max_speed_m_s: float = 0.3
    dynamic: bool = False
    done: Callable[[TabletopPhysics], bool] | None = None
    label: str = ""


@dataclass(frozen=True)
class ExpertConfig:
    """Gains of the resolved-rate controller.

    Attributes:
        kp_pos: position gain (1/s).
        kp_rot: orientation gain (1/s).
        max_rot_speed_rad_s: angular speed limit of the TCP.
        damping: damped-least-squares damping.
        k_null: null-space gain towards HOME_Q (1/s).
        speed_fraction: joint speeds are kept under this fraction of the FR3 limits.
        rot_tol_rad: orientation tolerance that completes a subgoal.
    """

    kp_pos: float = 5.0
    kp_rot: float = 4.0
    max_rot_speed_rad_s: float = 1.5
    damping: float = 0.02
    k_null: float = 1.0
    speed_fraction: float = 0.6
    rot_tol_rad: float = 0.06


def top_down_rotation(yaw: float) -> np.ndarray:
    """Tool rotation pointing straight down, turned by `yaw` about world z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ TOP_DOWN


def grasp_yaw(physics: TabletopPhysics, name: str) -> float:
    """Tool yaw that puts the fingers square to a cube's faces, the one nearest to yaw 0 (cubes repeat every 90°)."""
    return float((physics.object_yaw(name) + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def tool_yaw(physics: TabletopPhysics) -> float:
    """Current yaw of the tool about world z."""
    r = physics.tcp_rotation()
    return float(np.arctan2(r[1, 0], r[0, 0]))


class ScriptedExpert:
    """Runs a plan of subgoals, one DROID action per control step.

    Args:
        plan: the subgoals, in order.
        config: controller gains.
    """

    def __init__(self, plan: Sequence[Subgoal], config: ExpertConfig | None = None) -> None:
        self.plan = list(plan)
        self.config = config or ExpertConfig()
        self._index = 0
        self._steps = 0
        self._target: tuple[np.ndarray, float] | None = None

    @property
    def finished(self) -> bool:
        """Whether every subgoal has completed."""
        return self._index >= len(self.plan)

    def act(self, physics: TabletopPhysics) -> np.ndarray:
        """Return the DROID action for the current state, advancing through the plan."""
        action = np.zeros(ACTION_DIM)
        if self.finished:
            action[GRIPPER_INDEX] = self.plan[-1].gripper if self.plan else 0.0
            return action
        goal = self.plan[self._index]
        if self._target is None or goal.dynamic:
            self._target = goal.target(physics)
        position, yaw = self._target
        velocities, pos_err, rot_err = self._joint_velocities(physics, position, yaw, goal.max_speed_m_s)
        self._steps += 1
        reached = pos_err < goal.tol_m and rot_err < self.config.rot_tol_rad
        if goal.done is not None:
            reached = goal.done(physics)
        if (reached and self._steps >= goal.min_steps) or self._steps >= goal.max_steps:
            if not reached:
                log.debug("subgoal %s timed out (pos err %.3f m, rot err %.3f rad)", goal.label, pos_err, rot_err)
            self._index, self._steps, self._target = self._index + 1, 0, None
        action[:GRIPPER_INDEX] = droid_scale(rad_s_to_droid(velocities, 1.0 / CONTROL_RATE_HZ))
        action[GRIPPER_INDEX] = goal.gripper
        return action

    def _joint_velocities(self, physics: TabletopPhysics, position: np.ndarray, yaw: float,
                          max_speed: float) -> tuple[np.ndarray, float, float]:
        cfg = self.config
        pos_err = position - physics.tcp_position()
        rot = physics.tcp_rotation()
        desired = top_down_rotation(yaw)
        rot_err = 0.5 * sum(np.cross(rot[:, i], desired[:, i]) for i in range(3))
        v = _clip_norm(cfg.kp_pos * pos_err, max_speed)
        w = _clip_norm(cfg.kp_rot * rot_err, cfg.max_rot_speed_rad_s)
        jac = physics.tcp_jacobian()
        twist = np.concatenate([v, w])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + cfg.damping**2 * np.eye(6), twist)
        null = np.eye(len(dq)) - np.linalg.pinv(jac) @ jac
        dq += null @ (cfg.k_null * (HOME_Q - physics.arm_positions()))
        dq /= max(1.0, float(np.max(np.abs(dq) / (cfg.speed_fraction * DQ_MAX))))
        return dq, float(np.linalg.norm(pos_err)), float(np.linalg.norm(rot_err))


def _clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v if n <= limit else v * (limit / n)


# ---------------------------------------------------------------------------------------------------------- primitives
def _above(xy: np.ndarray, z: float, yaw: float) -> tuple[np.ndarray, float]:
    return np.array([xy[0], xy[1], z]), yaw


def pick(cube: str) -> list[Subgoal]:
    """Subgoals that grasp `cube` from above and lift it to SAFE_Z_M."""
    return [
        Subgoal(lambda p: _above(p.object_position(cube), SAFE_Z_M, grasp_yaw(p, cube)), 0.0, tol_m=0.012,
                label=f"above {cube}"),
        Subgoal(lambda p: _above(p.object_position(cube), GRASP_Z_M, grasp_yaw(p, cube)), 0.0, tol_m=0.006,
                max_speed_m_s=0.2, label=f"descend to {cube}"),
        Subgoal(lambda p: (p.tcp_position(), tool_yaw(p)), 1.0, tol_m=0.02, min_steps=6, label="close"),
        Subgoal(lambda p: _above(p.tcp_position(), SAFE_Z_M, tool_yaw(p)), 1.0, tol_m=0.015, label="lift"),
    ]


def place(xy_of: Callable[[TabletopPhysics], np.ndarray], release_z_m: float) -> list[Subgoal]:
    """Subgoals that carry the held object above `xy_of(physics)`, lower it to `release_z_m`, open and retreat."""
    return [
        Subgoal(lambda p: _above(xy_of(p), SAFE_Z_M, tool_yaw(p)), 1.0, tol_m=0.008, label="carry"),
        Subgoal(lambda p: _above(xy_of(p), release_z_m, tool_yaw(p)), 1.0, tol_m=0.006, max_speed_m_s=0.15,
                label="lower"),
        Subgoal(lambda p: (p.tcp_position(), tool_yaw(p)), RELEASE_GRIPPER, tol_m=0.02, min_steps=5,
                label="release"),
        Subgoal(lambda p: _above(p.tcp_position(), SAFE_Z_M, tool_yaw(p)), RELEASE_GRIPPER, tol_m=0.02,
                label="retreat"),
    ]


def push(cube: str, goal_of: Callable[[TabletopPhysics], np.ndarray], tol_m: float = 0.01) -> list[Subgoal]:
    """Subgoals that push `cube` along the table with closed fingers until its centre reaches `goal_of(physics)`.

    The pusher sits on the line through the cube's centre and the goal, behind the cube, and is re-aimed from the
    cube's pose every step; straight pushes are reliable, so callers split diagonal moves into axis-aligned legs.
    """
    def contact(p: TabletopPhysics) -> tuple[np.ndarray, np.ndarray, float, float]:
        centre = p.object_position(cube)[:2]
        d = goal_of(p) - centre
        dist = float(np.linalg.norm(d))
        unit = d / max(dist, 1e-9)
        tool_at = centre - unit * PAD_OFFSET_M
        pad_yaw = float((np.arctan2(unit[1], unit[0]) + np.pi / 2) % np.pi - np.pi / 2)
        return tool_at, unit, pad_yaw, dist

    def behind(p: TabletopPhysics, z: float) -> tuple[np.ndarray, float]:
        tool_at, unit, pad_yaw, _ = contact(p)
        return _above(tool_at - unit * 0.03, z, pad_yaw)

    def pushing(p: TabletopPhysics) -> tuple[np.ndarray, float]:
        tool_at, unit, pad_yaw, dist = contact(p)
        rel = p.tcp_position()[:2] - tool_at
        lateral = float(np.linalg.norm(rel - (rel @ unit) * unit))
        # Off the cube-goal line: back away from the cube while sliding onto the line (so the sideways move does not
        # drag the cube along by friction), advance only once aligned.
        advance = min(0.03, dist + 0.005) - 0.05 * min(1.0, lateral / 0.01)
        return _above(tool_at + unit * advance, PUSH_Z_M, pad_yaw)

    def arrived(p: TabletopPhysics) -> bool:
        return contact(p)[3] < tol_m

    return [
        Subgoal(lambda p: behind(p, SAFE_Z_M), 1.0, tol_m=0.012, label=f"behind {cube}"),
        Subgoal(lambda p: behind(p, PUSH_Z_M), 1.0, tol_m=0.006, max_speed_m_s=0.2, label="lower pusher"),
        Subgoal(pushing, 1.0, max_steps=110, max_speed_m_s=0.1, dynamic=True, done=arrived, label=f"push {cube}"),
        Subgoal(lambda p: _above(p.tcp_position(), SAFE_Z_M, tool_yaw(p)), 1.0, tol_m=0.02, label="retreat"),
    ]
