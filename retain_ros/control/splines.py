"""The motion a joint_trajectory_controller makes of a command, so that limits are checked on it, not on a model.

ros2_controllers' JTC (splines mode) interpolates points that carry positions and velocities with one cubic Hermite
segment per pair of points; the first segment starts from the state the controller has when the command arrives.
Velocity along a cubic is a quadratic and acceleration is linear, so each segment's peaks are exact in closed form:
acceleration at the two ends, velocity at the ends or at the one interior extremum. Points with positions only are
joined linearly (constant speed per segment).

Knot velocities are chosen monotone (Fritsch-Carlson): zero where the neighbouring segment speeds differ in sign,
else their harmonic mean, so no segment overshoots its end positions (the first segment, which starts from the arm's
current velocity, excepted) and joint position limits that hold at the points hold between them. A command ends with a
braking tail (constant deceleration to rest), so its last action is passed at speed instead of being approached as a
stop: the next command normally replaces it before the tail, and when none comes the arm stops within its limits.
"""

from __future__ import annotations

import numpy as np


def knot_velocities(start: np.ndarray, positions: np.ndarray, times_s: np.ndarray,
                    moving_end: bool = False) -> np.ndarray:
    """(N, J) velocities at the N points: monotone inside; at the last, zero or (moving_end) its segment's speed.

    Args:
        start: (J,) positions the command starts from.
        positions: (N, J) points.
        times_s: (N,) time_from_start of each point.
        moving_end: the last point is passed at its segment's speed (a braking tail follows it), not at rest.
    """
    speeds = segment_speeds(start, positions, times_s)
    left, right = speeds[:-1], speeds[1:]
    same_sign = left * right > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = np.where(same_sign, 2.0 * left * right / (left + right), 0.0)
    last = speeds[-1:] if moving_end else np.zeros((1, positions.shape[1]))
    return np.vstack([harmonic, last])


def braking_tail(position: np.ndarray, velocity: np.ndarray, ddq_max: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The point and duration that bring `velocity` to rest at constant deceleration within `ddq_max`, or None at rest.

    Along the cubic from (position, velocity) to (point, 0) over that duration the velocity falls linearly, so the
    deceleration is exactly |velocity| / duration on the fastest joint relative to its limit.
    """
    duration = float(np.max(np.abs(velocity) / np.asarray(ddq_max)))
    if duration < 1e-3:  # at rest, or so slow that the last action is a stop already
        return None
    return position + velocity * duration / 2.0, duration


def segment_speeds(start: np.ndarray, positions: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """(N, J) mean speed of each segment, from `start` to the first point too."""
    durations = np.diff(np.concatenate([[0.0], times_s]))
    return np.diff(np.vstack([start, positions]), axis=0) / durations[:, None]


def hermite_peaks(start: np.ndarray, start_velocity: np.ndarray, positions: np.ndarray, velocities: np.ndarray,
                  times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, J) peak |velocity| and peak |acceleration| of each cubic segment.

    The first segment's starting velocity is the arm's current one, which no command can change: its peak velocity
    counts only the rest of that segment (its end and an interior extremum).
    """
    p0 = np.vstack([start, positions[:-1]])
    v0 = np.vstack([start_velocity, velocities[:-1]])
    h = np.diff(np.concatenate([[0.0], times_s]))[:, None]
    d = positions - p0
    a_start = (6.0 * d / h - 4.0 * v0 - 2.0 * velocities) / h
    a_end = (-6.0 * d / h + 2.0 * v0 + 4.0 * velocities) / h
    jerk = (a_end - a_start) / h
    with np.errstate(divide="ignore", invalid="ignore"):
        t_peak = np.where(jerk != 0.0, -a_start / jerk, -1.0)
    inside = (t_peak > 0.0) & (t_peak < h)
    v_peak = np.where(inside, v0 + a_start * t_peak + 0.5 * jerk * t_peak ** 2, 0.0)
    peak_v = np.maximum(np.abs(velocities), np.abs(v_peak))
    peak_v[1:] = np.maximum(peak_v[1:], np.abs(v0[1:]))
    return peak_v, np.maximum(np.abs(a_start), np.abs(a_end))


def hermite_position_range(start: np.ndarray, start_velocity: np.ndarray, positions: np.ndarray,
                           velocities: np.ndarray, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, J) lowest and highest position each cubic segment reaches, in closed form.

    A segment's position has its extremes at its ends or where its velocity (a quadratic) is zero inside it; the first
    segment, which starts from the arm's own velocity, can overshoot its end point this way.
    """
    p0 = np.vstack([start, positions[:-1]])
    v0 = np.vstack([start_velocity, velocities[:-1]])
    h = np.broadcast_to(np.diff(np.concatenate([[0.0], times_s]))[:, None], p0.shape)
    d = positions - p0
    # p(t) = p0 + v0 t + c2 t^2 + c3 t^3 (Hermite form); v(t) = v0 + 2 c2 t + 3 c3 t^2
    c2 = (3.0 * d / h - 2.0 * v0 - velocities) / h
    c3 = (-2.0 * d / h + v0 + velocities) / h ** 2
    lo, hi = np.minimum(p0, positions), np.maximum(p0, positions)
    qa, qb, qc = 3.0 * c3, 2.0 * c2, v0
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.where(qa != 0.0, qb * qb - 4.0 * qa * qc, 0.0)
        root = np.sqrt(np.maximum(disc, 0.0))
        roots = [np.where(qa != 0.0, (-qb + root) / (2.0 * qa), np.where(qb != 0.0, -qc / qb, -1.0)),
                 np.where(qa != 0.0, (-qb - root) / (2.0 * qa), -1.0)]
    for t in roots:
        inside = (disc >= 0.0) & (t > 0.0) & (t < h)
        t = np.where(inside, t, 0.0)
        p = p0 + v0 * t + c2 * t ** 2 + c3 * t ** 3
        lo, hi = np.where(inside, np.minimum(lo, p), lo), np.where(inside, np.maximum(hi, p), hi)
    return lo, hi


def hermite_state(p0: np.ndarray, v0: np.ndarray, p1: np.ndarray, v1: np.ndarray, h: float,
                  t: float) -> tuple[np.ndarray, np.ndarray]:
    """(position, velocity) at time t in [0, h] of the cubic Hermite segment (p0, v0) -> (p1, v1)."""
    s = t / h
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
    position = h00 * p0 + h10 * h * v0 + h01 * p1 + h11 * h * v1
    velocity = (d00 * p0 + d01 * p1) / h + d10 * v0 + d11 * v1
    return position, velocity
