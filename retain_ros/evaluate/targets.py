"""What the robot actually executed, as time series read from a bag, and the predicted chunk in the same space.

Three sources, chosen with `--target` (auto: the first one the bag has):
- `action`: DROID actions (std_msgs/Float64MultiArray on /action: 7 joint velocities + gripper 0..1), compared
  in the policy's action space (DROID-normalised velocities a for DROID policies, else rad/s: `units`); step h of
  a chunk is matched with the action recorded nearest t + h dt.
- `command`: the JointTrajectory commands sent to the controller (a newer message replaces the rest of an older one,
  as joint_trajectory_controller does) and the gripper width commands (std_msgs/Float64, m); compared in joint
  positions (rad): a velocity chunk is integrated from the observed joints, q_h = q_obs + dt * sum(v_0..v_h), and
  matched with the commanded position at t + (h + 1) dt.
- `joint_states`: the measured joint states that followed (and the finger states for the gripper), as `command`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retain_ros.control import messages
from retain_ros.droid_action import integrate_velocities
from retain_ros.errors import ConfigError
from retain_ros.gripper import gripper_position, width_to_position
from retain_ros.policy.interface import DROID_JOINT_VELOCITY, VELOCITY_KINDS, ActionChunk

ACTION, COMMAND, JOINT_STATES = "action", "command", "joint_states"
TARGETS = (ACTION, COMMAND, JOINT_STATES)
UNITS = {ACTION: "rad/s", COMMAND: "rad", JOINT_STATES: "rad"}
DROID_UNITS = "DROID-normalised"  # a in [-1, 1]: the joint target moves 0.2 rad x a per 15 Hz step (droid_action.py)


def units(target: str, action_kind: str) -> str:
    """The units errors against `target` are in: the action space for `action`, radians for positions."""
    if target == ACTION and action_kind == DROID_JOINT_VELOCITY:
        return DROID_UNITS
    return UNITS[target]


@dataclass
class Series:
    """Samples of a vector over time.

    Attributes:
        times_ns: (N,) sorted sample times.
        values: (N, K) values.
        mode: 'nearest' (within `tolerance_ns`), 'linear' (interpolated inside the sampled span, no gap larger than
            `tolerance_ns`) or 'hold' (the last value at or before the query).
        tolerance_ns: see `mode`.
    """

    times_ns: np.ndarray
    values: np.ndarray
    mode: str
    tolerance_ns: int

    def at(self, query_ns: np.ndarray) -> np.ndarray:
        """(Q, K) values at the query times; NaN where the series says nothing."""
        q = np.asarray(query_ns, dtype=np.int64)
        out = np.full((len(q), self.values.shape[1]), np.nan)
        t = self.times_ns
        if len(t) == 0:
            return out
        right = np.searchsorted(t, q, side="right")  # first sample after q
        left = right - 1
        if self.mode == "hold":
            ok = left >= 0
            out[ok] = self.values[left[ok]]
            return out
        if self.mode == "nearest":
            lo, hi = np.clip(left, 0, len(t) - 1), np.clip(right, 0, len(t) - 1)
            pick = np.where(np.abs(t[hi] - q) < np.abs(t[lo] - q), hi, lo)
            ok = np.abs(t[pick] - q) <= self.tolerance_ns
            out[ok] = self.values[pick[ok]]
            return out
        inside = (left >= 0) & (right < len(t))
        exact = (left >= 0) & (t[np.clip(left, 0, len(t) - 1)] == q)
        out[exact] = self.values[left[exact]]
        idx = np.nonzero(inside & ~exact)[0]
        t0, t1 = t[left[idx]], t[right[idx]]
        ok = (t1 - t0) <= self.tolerance_ns
        idx, t0, t1 = idx[ok], t0[ok], t1[ok]
        w = ((q[idx] - t0) / (t1 - t0))[:, None]
        out[idx] = (1 - w) * self.values[left[idx]] + w * self.values[right[idx]]
        return out


class TargetBuilder:
    """Collects the executed-action messages of one episode and answers what was executed after an observation.

    Args:
        kind: 'action', 'command' or 'joint_states'.
        joint_names: arm joints in action order.
        gripper_joint_names: finger joints (joint_states target).
        gripper_max_width_m: opening of the open gripper (width -> DROID position).
        dt_s: time between the actions of a chunk.
    """

    def __init__(self, kind: str, joint_names: tuple[str, ...], gripper_joint_names: tuple[str, ...],
                 gripper_max_width_m: float, dt_s: float) -> None:
        if kind not in TARGETS:
            raise ConfigError(f"--target '{kind}' is unknown; use one of auto, {', '.join(TARGETS)}")
        self.kind, self.joint_names, self.dt_s = kind, tuple(joint_names), float(dt_s)
        self.gripper_joint_names, self.max_width = tuple(gripper_joint_names), float(gripper_max_width_m)
        self._arm: list[tuple[int, np.ndarray]] = []
        self._gripper: list[tuple[int, float]] = []
        self._traj: list[tuple[int, np.ndarray, np.ndarray]] = []  # (start ns, abs times ns, positions)

    def add_action(self, log_ns: int, msg: object) -> None:
        """A DROID action (Float64MultiArray: joints..., gripper)."""
        data = np.asarray(msg.data, dtype=np.float64)
        if data.size != len(self.joint_names) + 1:
            raise ConfigError(f"action message has {data.size} values; expected {len(self.joint_names)} joint "
                              "velocities + 1 gripper (DROID). Fix: --target command or joint_states")
        self._arm.append((log_ns, data[:-1]))
        self._gripper.append((log_ns, float(data[-1])))

    def add_trajectory(self, log_ns: int, msg: object) -> None:
        """A JointTrajectory command (header stamp 0 = starts on receipt)."""
        times_s, positions, _ = messages.trajectory_arrays(msg, self.joint_names)
        start = messages.stamp_to_ns(msg.header.stamp) or log_ns
        self._traj.append((start, start + np.round(times_s * 1e9).astype(np.int64), positions))

    def add_gripper_width(self, log_ns: int, msg: object) -> None:
        """A gripper width command (m)."""
        self._gripper.append((log_ns, width_to_position(msg.data, self.max_width)))

    def add_joint_state(self, log_ns: int, msg: object) -> None:
        """A measured arm joint state."""
        self._arm.append((log_ns, messages.joint_positions(msg, self.joint_names)))

    def add_finger_state(self, log_ns: int, msg: object) -> None:
        """A measured finger state."""
        self._gripper.append((log_ns, gripper_position(messages.joint_positions(msg, self.gripper_joint_names),
                                                       self.max_width)))

    @property
    def empty(self) -> bool:
        """No executed arm motion was recorded."""
        return not self._arm and not self._traj

    def _arm_series(self) -> Series:
        tol = int(self.dt_s * 1e9 * (0.5 if self.kind == ACTION else 3.0))
        if self._traj:  # a newer trajectory replaces the points of older ones from its start on
            times, values = [], []
            ordered = sorted(self._traj, key=lambda item: item[0])
            for i, (_, abs_ns, pos) in enumerate(ordered):
                cut = ordered[i + 1][0] if i + 1 < len(ordered) else None
                keep = abs_ns < cut if cut is not None else np.ones(len(abs_ns), bool)
                times.append(abs_ns[keep])
                values.append(pos[keep])
            t, v = np.concatenate(times), np.concatenate(values)
        else:
            t = np.array([s[0] for s in self._arm], dtype=np.int64)
            v = np.array([s[1] for s in self._arm]).reshape(len(t), len(self.joint_names))
        order = np.argsort(t, kind="stable")
        return Series(t[order], v[order], "nearest" if self.kind == ACTION else "linear", tol)

    def _gripper_series(self) -> Series:
        t = np.array([s[0] for s in self._gripper], dtype=np.int64)
        v = np.array([s[1] for s in self._gripper], dtype=np.float64).reshape(-1, 1)
        order = np.argsort(t, kind="stable")
        mode = "nearest" if self.kind == ACTION else "hold"
        return Series(t[order], v[order], mode, int(self.dt_s * 0.5e9))

    def build(self) -> Targets:
        """Freeze the series."""
        return Targets(self.kind, self._arm_series(), self._gripper_series(), self.dt_s)


@dataclass
class Targets:
    """Executed actions of one episode, queried per observation."""

    kind: str
    arm: Series
    gripper: Series
    dt_s: float

    def target(self, obs_ns: int, horizon: int) -> np.ndarray:
        """(H, J + 1) what was executed after an observation at `obs_ns` (NaN where unknown)."""
        offset = 0 if self.kind == ACTION else 1
        query = obs_ns + np.round((np.arange(horizon) + offset) * self.dt_s * 1e9).astype(np.int64)
        return np.concatenate([self.arm.at(query), self.gripper.at(query)], axis=1)

    def prediction(self, chunk: ActionChunk, joint_positions: np.ndarray) -> np.ndarray:
        """(H, J + 1) the chunk in the target's space: the raw actions, or integrated joint positions."""
        actions = np.asarray(chunk.actions, dtype=np.float64)
        g = chunk.space.gripper_index
        arm = np.delete(actions, g, axis=1)
        if self.kind == ACTION:
            if chunk.space.kind != DROID_JOINT_VELOCITY:
                raise ConfigError(f"the policy outputs {chunk.space.kind} actions but the bag's /action holds "
                                  f"{DROID_JOINT_VELOCITY} actions; use --target command or joint_states")
        elif chunk.space.kind in VELOCITY_KINDS:  # the policy's intent, unclamped: any robot's joints, no limits
            arm, _ = integrate_velocities(joint_positions, arm, chunk.space.kind, chunk.dt_s, np.inf)
        return np.concatenate([arm, actions[:, g:g + 1]], axis=1)
