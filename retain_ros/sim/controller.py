"""A joint-trajectory tracker with the semantics of ros2_control's joint_trajectory_controller (Jazzy defaults).

- A new trajectory replaces the running one; nothing is blended.
- It is anchored at the measured state at its start time and interpolates to point[0] over point[0].time_from_start.
- Positions only -> linear interpolation; positions + velocities -> cubic Hermite (the anchor uses the measured
  velocity).
- time_from_start must strictly increase; a trajectory that ends in the past is rejected; so is one whose last point has
  a nonzero velocity (Jazzy's allow_nonzero_velocity_at_trajectory_end = false).
- After the last point the controller holds its position.

The arrays are in the controller's joint order; `JointTrajectory.joint_names` may list the joints in any order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retain_ros.errors import ConfigError


class TrajectoryRejected(ConfigError):
    """The controller refused a trajectory; the message says which rule it broke. The previous one keeps running."""


@dataclass(frozen=True)
class TrajectoryPoint:
    """One waypoint, like trajectory_msgs/JointTrajectoryPoint.

    Attributes:
        positions: joint positions (rad), in the trajectory's joint_names order.
        time_from_start_s: when to reach them, relative to the trajectory's start (s).
        velocities: optional joint velocities (rad/s); given on every point -> cubic interpolation.
    """

    positions: np.ndarray
    time_from_start_s: float
    velocities: np.ndarray | None = None


@dataclass(frozen=True)
class JointTrajectory:
    """A trajectory command, like trajectory_msgs/JointTrajectory.

    Attributes:
        joint_names: names of the joints the point arrays refer to.
        points: waypoints with strictly increasing time_from_start_s.
        start_time_s: when the trajectory starts on the controller's clock; None (header.stamp = 0) means now.
    """

    joint_names: tuple[str, ...]
    points: tuple[TrajectoryPoint, ...]
    start_time_s: float | None = None


class JointTrajectoryController:
    """Tracks one joint trajectory at a time; sample it at any time to get the set-point.

    Args:
        joint_names: the controlled joints, in the order of every array this class returns.
        q_min: lower position limits (rad); set-points are clipped to them.
        q_max: upper position limits (rad).
    """

    def __init__(self, joint_names: Sequence[str], q_min: np.ndarray, q_max: np.ndarray) -> None:
        self.joint_names = tuple(joint_names)
        self._q_min = np.asarray(q_min, dtype=float)
        self._q_max = np.asarray(q_max, dtype=float)
        self._times = np.zeros(1)
        self._positions = np.zeros((1, len(self.joint_names)))
        self._velocities: np.ndarray | None = None

    def hold(self, q: np.ndarray) -> None:
        """Drop any trajectory and hold the positions `q`."""
        self._times = np.zeros(1)
        self._positions = np.clip(np.asarray(q, dtype=float), self._q_min, self._q_max)[None, :]
        self._velocities = None

    @property
    def end_time_s(self) -> float:
        """Time at which the active trajectory reaches its last point."""
        return float(self._times[-1])

    def command(self, trajectory: JointTrajectory, now_s: float, q_measured: np.ndarray,
                dq_measured: np.ndarray) -> None:
        """Replace the running trajectory with `trajectory`, anchored at the measured state.

        Args:
            trajectory: the new command.
            now_s: the controller's current time (s).
            q_measured: measured joint positions (rad), controller order.
            dq_measured: measured joint velocities (rad/s), controller order.

        Raises:
            TrajectoryRejected: empty, unknown or missing joints, wrong sizes, non-increasing times, non-finite values,
                ending in the past, or a nonzero final velocity. The previous trajectory is kept.
        """
        order = self._joint_order(trajectory.joint_names)
        points = trajectory.points
        if not points:
            raise TrajectoryRejected("trajectory has no points; send at least one point")
        start = now_s if not trajectory.start_time_s else float(trajectory.start_time_s)
        offsets = np.array([p.time_from_start_s for p in points], dtype=float)
        if offsets[0] <= 0.0 and start <= now_s and len(points) == 1:
            raise TrajectoryRejected("the only point has time_from_start <= 0; give it a positive duration")
        if np.any(np.diff(offsets) <= 0.0) or offsets[0] < 0.0:
            raise TrajectoryRejected(f"time_from_start must be >= 0 and strictly increase, got {offsets.tolist()}")
        if start + offsets[-1] < now_s:
            raise TrajectoryRejected(
                f"trajectory ends in the past ({start + offsets[-1]:.3f} s < now {now_s:.3f} s); stamp it 0 or later"
            )
        positions = self._stack(points, "positions", order)
        velocities = self._velocities_of(points, order)
        anchor_q = np.clip(np.asarray(q_measured, dtype=float), self._q_min, self._q_max)
        self._times = np.concatenate([[start], start + offsets]) if offsets[0] > 0 else start + offsets
        first = [anchor_q] if offsets[0] > 0 else []
        self._positions = np.clip(np.vstack([*first, positions]), self._q_min, self._q_max)
        if velocities is not None:
            first_v = [np.asarray(dq_measured, dtype=float)] if offsets[0] > 0 else []
            self._velocities = np.vstack([*first_v, velocities])
        else:
            self._velocities = None

    def sample(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Set-point at time `t_s`: (positions rad, velocities rad/s). Holds the ends outside the trajectory."""
        times = self._times
        if t_s <= times[0] or len(times) == 1:
            return self._positions[0].copy(), np.zeros(len(self.joint_names))
        if t_s >= times[-1]:
            return self._positions[-1].copy(), np.zeros(len(self.joint_names))
        k = int(np.searchsorted(times, t_s, side="right")) - 1
        h = times[k + 1] - times[k]
        s = (t_s - times[k]) / h
        p0, p1 = self._positions[k], self._positions[k + 1]
        if self._velocities is None:
            return p0 + s * (p1 - p0), (p1 - p0) / h
        v0, v1 = self._velocities[k] * h, self._velocities[k + 1] * h
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        q = h00 * p0 + h10 * v0 + h01 * p1 + h11 * v1
        dq = (d00 * p0 + d10 * v0 + d01 * p1 + d11 * v1) / h
        return q, dq

    def sample_many(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Set-points at many times at once: (positions, velocities, accelerations), each (T, J).

        The same interpolation as `sample`, vectorised, with the acceleration (the second derivative) in closed form:
        what a limit check of the controller's motion needs, sampled finely over whole sequences of commands.
        """
        t = np.asarray(times_s, dtype=float)
        times, n = self._times, len(self.joint_names)
        if len(times) == 1:
            shape = (len(t), n)
            return np.broadcast_to(self._positions[0], shape).copy(), np.zeros(shape), np.zeros(shape)
        k = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
        h = (times[k + 1] - times[k])[:, None]
        s = np.clip((t - times[k])[:, None] / h, 0.0, 1.0)
        p0, p1 = self._positions[k], self._positions[k + 1]
        if self._velocities is None:
            q, dq, ddq = p0 + s * (p1 - p0), (p1 - p0) / h, np.zeros_like(p0)
        else:
            m0, m1 = self._velocities[k] * h, self._velocities[k + 1] * h
            q = (2 * s**3 - 3 * s**2 + 1) * p0 + (s**3 - 2 * s**2 + s) * m0 + (-2 * s**3 + 3 * s**2) * p1 \
                + (s**3 - s**2) * m1
            dq = ((6 * s**2 - 6 * s) * p0 + (3 * s**2 - 4 * s + 1) * m0 + (-6 * s**2 + 6 * s) * p1
                  + (3 * s**2 - 2 * s) * m1) / h
            ddq = ((12 * s - 6) * p0 + (6 * s - 4) * m0 + (6 - 12 * s) * p1 + (6 * s - 2) * m1) / h**2
        outside = (t < times[0]) | (t >= times[-1])  # at the start itself: the anchor's state, its velocity included
        q = np.where(outside[:, None], np.where((t < times[0])[:, None], self._positions[0], self._positions[-1]), q)
        dq, ddq = np.where(outside[:, None], 0.0, dq), np.where(outside[:, None], 0.0, ddq)
        return q, dq, ddq

    # ------------------------------------------------------------------------------------------------- helpers
    def _joint_order(self, names: Sequence[str]) -> np.ndarray:
        unknown = sorted(set(names) - set(self.joint_names))
        missing = sorted(set(self.joint_names) - set(names))
        if unknown or missing or len(names) != len(self.joint_names):
            raise TrajectoryRejected(
                f"trajectory joints {list(names)} do not match the controller's {list(self.joint_names)} "
                f"(unknown: {unknown}, missing: {missing}); send every controlled joint once"
            )
        return np.array([list(names).index(j) for j in self.joint_names])

    def _stack(self, points: Sequence[TrajectoryPoint], field: str, order: np.ndarray) -> np.ndarray:
        rows = []
        for i, p in enumerate(points):
            row = np.asarray(getattr(p, field), dtype=float)
            if row.shape != (len(self.joint_names),) or not np.all(np.isfinite(row)):
                raise TrajectoryRejected(
                    f"point {i} {field} must be {len(self.joint_names)} finite numbers, got {row.tolist()}"
                )
            rows.append(row[order])
        return np.vstack(rows)

    def _velocities_of(self, points: Sequence[TrajectoryPoint], order: np.ndarray) -> np.ndarray | None:
        given = [p.velocities is not None and len(p.velocities) > 0 for p in points]
        if not any(given):
            return None
        if not all(given):
            raise TrajectoryRejected("velocities must be given on every point or on none")
        velocities = self._stack(points, "velocities", order)
        if np.any(velocities[-1] != 0.0):
            raise TrajectoryRejected(
                "the last point has nonzero velocities (allow_nonzero_velocity_at_trajectory_end is false); "
                "end the trajectory at rest"
            )
        return velocities
