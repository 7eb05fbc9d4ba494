"""Action chunk -> safe joint trajectory for a joint_trajectory_controller (plain logic, no ROS).

Two execution modes (`ExecutorConfig.mode`):
- 'chunk': one trajectory per chunk (`plan`):
  1. reject anything non-finite (the chunk is dropped; the controller keeps holding);
  2. arm part -> absolute joint targets: joint velocities (DROID's normalised a, converted as DROID does, or rad/s)
     are clamped to the velocity limits and integrated from the joint positions the policy saw (action k reaches its
     target at (k + 1) dt after the observation), or absolute positions are taken as they are;
  3. drop the actions whose target time passed while the model ran (latency compensation);
  4. keep `execute_steps` actions, optionally blended with the remainder of the previous chunk;
  5. clamp to the position limits; give the first point at least `min_lead_time_s`; stretch any segment (also the first
     one, from the measured state) whose speed would exceed the scaled velocity limit or whose change of speed from the
     segment before (from the commanded velocity for the first) would exceed the scaled acceleration limit; add
     finite-difference velocities with a zero final velocity (Jazzy rejects others);
  6. check the result once more: strictly increasing times, finite, within limits, final velocity zero.
- 'stream': one single-point trajectory per control period (`plan_step`), as DROID and openpi's DROID client execute:
  the action's step is re-anchored on the LATEST measured joint positions (target = q_now + v dt, v clamped to the
  scaled velocity limit and to the scaled acceleration limit from the previous step's velocity), positions only, so the
  controller moves at constant speed to it.
`speed_scale` scales the velocity and acceleration limits (low for first runs on a robot); paths are kept, only time
stretches (chunk mode) or steps shrink (stream mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retain_ros.control.splines import (braking_tail, hermite_peaks, hermite_state, knot_velocities,
                                        segment_speeds)
from retain_ros.droid_action import (ACTION_KINDS, JOINT_POSITION, VELOCITY_KINDS, arm_velocities_rad_s,
                                     integrate_velocities)
from retain_ros.errors import ConfigError
from retain_ros.fr3 import FR3_DDQ_MAX, FR3_DQ_MAX, FR3_Q_MAX, FR3_Q_MIN

EXECUTION_MODES = ("chunk", "stream")


class UnsafeChunk(ConfigError):
    """The chunk cannot be executed safely (non-finite numbers, too late, wrong size); nothing is commanded."""


@dataclass(frozen=True)
class JointLimits:
    """Position, velocity and acceleration limits in the executor's joint order.

    Attributes:
        q_min: lower position limits (rad).
        q_max: upper position limits (rad).
        dq_max: velocity limits (rad/s, > 0).
        ddq_max: acceleration limits (rad/s^2, > 0).
    """

    q_min: tuple[float, ...] = FR3_Q_MIN
    q_max: tuple[float, ...] = FR3_Q_MAX
    dq_max: tuple[float, ...] = FR3_DQ_MAX
    ddq_max: tuple[float, ...] = FR3_DDQ_MAX

    def __post_init__(self) -> None:
        n = len(self.q_min)
        if not (len(self.q_max) == len(self.dq_max) == len(self.ddq_max) == n):
            raise ConfigError(f"joint limits have different lengths: position_min {len(self.q_min)}, position_max "
                              f"{len(self.q_max)}, velocity_max {len(self.dq_max)}, acceleration_max "
                              f"{len(self.ddq_max)}; give one value per joint")
        values = np.array([self.q_min, self.q_max, self.dq_max, self.ddq_max], dtype=float)
        if not np.all(np.isfinite(values)) or np.any(values[0] >= values[1]) or np.any(values[2:] <= 0):
            raise ConfigError(f"joint limits must be finite with position_min < position_max and velocity_max, "
                              f"acceleration_max > 0, got {values.tolist()}")

    def scaled(self, speed_scale: float) -> JointLimits:
        """The same position limits with velocities and accelerations times `speed_scale`."""
        return JointLimits(self.q_min, self.q_max, tuple(v * speed_scale for v in self.dq_max),
                           tuple(a * speed_scale for a in self.ddq_max))


@dataclass(frozen=True)
class ExecutorConfig:
    """How chunks are executed.

    Attributes:
        limits: joint limits (the arm joints, in action order).
        execute_steps: actions executed from each chunk (the rest is dropped when the next chunk arrives).
        blend_weight: weight of the previous chunk's remainder where the two overlap (0 = replace, no blending).
        max_start_jump_rad: a first target farther than this from the measured state rejects the chunk.
        position_margin_rad: targets are kept this far inside the position limits.
        stop_decel_rad_s2: deceleration of the stop command sent when commanding stops mid-chunk (Franka: 10 max).
        speed_scale: factor (0, 1] on the velocity and acceleration limits.
        min_lead_time_s: the first point is reached no sooner than this after the command is sent, so a small
            mismatch between the measured state and the first target is not crossed at full speed.
        mode: 'chunk' (one trajectory per chunk) or 'stream' (one re-anchored step per control period).
    """

    limits: JointLimits = JointLimits()
    execute_steps: int = 8
    blend_weight: float = 0.0
    max_start_jump_rad: float = 0.5
    position_margin_rad: float = 0.01
    stop_decel_rad_s2: float = 5.0
    speed_scale: float = 1.0
    min_lead_time_s: float = 0.05
    mode: str = "chunk"

    def __post_init__(self) -> None:
        if self.execute_steps < 1:
            raise ConfigError(f"execute_steps={self.execute_steps} must be >= 1")
        if not 0.0 <= self.blend_weight < 1.0:
            raise ConfigError(f"blend_weight={self.blend_weight} must be in [0, 1)")
        if not self.max_start_jump_rad > 0:
            raise ConfigError(f"max_start_jump_rad={self.max_start_jump_rad} must be > 0")
        if not 0.0 < self.stop_decel_rad_s2 <= 10.0:
            raise ConfigError(f"stop_decel_rad_s2={self.stop_decel_rad_s2} must be in (0, 10] rad/s^2 (Franka's "
                              "acceleration limit is 10; default 5)")
        span = float(np.min(np.asarray(self.limits.q_max) - np.asarray(self.limits.q_min)))
        if not 0.0 <= self.position_margin_rad < span / 2:
            raise ConfigError(f"position_margin_rad={self.position_margin_rad} must be >= 0 and leave room inside "
                              f"the narrowest joint range ({span:.3f} rad); default 0.01")
        if not 0.0 < self.speed_scale <= 1.0:
            raise ConfigError(f"speed_scale={self.speed_scale} must be in (0, 1] (a fraction of the joint velocity and "
                              "acceleration limits; start low, e.g. 0.2, on a robot)")
        if not 0.0 <= self.min_lead_time_s <= 1.0:
            raise ConfigError(f"min_lead_time_s={self.min_lead_time_s} must be in [0, 1] s (default 0.05)")
        if self.mode not in EXECUTION_MODES:
            raise ConfigError(f"execution mode '{self.mode}' is unknown; use one of {', '.join(EXECUTION_MODES)}")


@dataclass(frozen=True)
class PlannedCommand:
    """One command for the controller, relative to the moment it is sent (header stamp 0 = now).

    Attributes:
        times_s: (N,) strictly increasing time_from_start (s), first > 0.
        positions: (N, J) joint targets (rad), within limits.
        velocities: (N, J) joint velocities (rad/s), last row zero; None = positions only (linear interpolation,
            the stream mode's single point).
        gripper: gripper position of the first executed action (0 open .. 1 closed), or None.
        skipped: actions dropped because their time had passed.
        clamped: some value was clamped to a limit (or a segment slowed down).
        sent_ns: the clock time the plan was made for.
        start: (J,) the measured joint positions the controller starts from.
        start_velocity: (J,) the velocity the arm is expected to have then (the running command's); None = at rest.
        braking_tail: the last point is not an action but the rest point of a constant deceleration after them.
    """

    times_s: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None
    gripper: float | None
    skipped: int
    clamped: bool
    sent_ns: int
    start: np.ndarray
    start_velocity: np.ndarray | None = None
    braking_tail: bool = False

    @property
    def actions_end_s(self) -> float:
        """Time the last action is reached (the braking tail after it runs only when no next command comes)."""
        return float(self.times_s[self.actions_executed - 1])

    @property
    def actions_executed(self) -> int:
        """Points that are the chunk's actions (the braking tail after them is not one)."""
        return len(self.times_s) - int(self.braking_tail)

    @property
    def duration_s(self) -> float:
        """Time until the last point is reached."""
        return float(self.times_s[-1])

    @property
    def initial_velocity(self) -> np.ndarray:
        """The velocity the command starts from (zeros when at rest)."""
        return np.zeros_like(self.start) if self.start_velocity is None else self.start_velocity

    def state_at(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(positions, velocities) the controller's interpolation gives `t_s` after the command was sent.

        Positions and velocities -> cubic Hermite segments (as the JTC's splines); positions only -> linear.
        """
        times = np.concatenate([[0.0], self.times_s])
        points = np.vstack([self.start, self.positions])
        t = float(np.clip(t_s, 0.0, times[-1]))
        k = min(int(np.searchsorted(times, t, side="right")) - 1, len(times) - 2)
        h = times[k + 1] - times[k]
        if self.velocities is None:
            q = points[k] + (points[k + 1] - points[k]) * (t - times[k]) / h
            return q, ((points[k + 1] - points[k]) / h if t < times[-1] else np.zeros_like(q))
        knots = np.vstack([self.initial_velocity, self.velocities])
        return hermite_state(points[k], knots[k], points[k + 1], knots[k + 1], h, t - times[k])


class ChunkExecutor:
    """Turns action chunks into `PlannedCommand`s; remembers the last plan for blending and stopping.

    Args:
        config: execution settings.
    """

    def __init__(self, config: ExecutorConfig) -> None:
        self._previous: PlannedCommand | None = None
        self.config = config

    @property
    def config(self) -> ExecutorConfig:
        """The execution settings; assigning new ones takes effect with the next chunk."""
        return self._config

    @config.setter
    def config(self, config: ExecutorConfig) -> None:
        self._config = config
        self.limits = config.limits.scaled(config.speed_scale)
        self._q_min = np.asarray(config.limits.q_min, float) + config.position_margin_rad
        self._q_max = np.asarray(config.limits.q_max, float) - config.position_margin_rad
        self._dq_max = np.asarray(self.limits.dq_max, float)
        self._ddq_max = np.asarray(self.limits.ddq_max, float)

    @property
    def num_joints(self) -> int:
        """Arm joints the executor commands."""
        return len(self._dq_max)

    def stop(self, now_ns: int, min_time_s: float = 0.1) -> PlannedCommand | None:
        """A command that brings the arm to rest from where the last plan has it now; None when it is at rest.

        Sent when commanding stops (stale stream, pause, rejected chunk, deactivate, shutdown) so the arm does not
        finish a chunk computed from inputs that are no longer trusted. The stop point is the commanded position plus
        the distance covered while decelerating at `stop_decel_rad_s2` (no reversal, no acceleration spike), inside the
        position limits. Forgets the last plan.
        """
        prev, self._previous = self._previous, None
        if prev is None:
            return None
        t = (int(now_ns) - prev.sent_ns) * 1e-9
        if t >= prev.duration_s:
            return None  # the last trajectory has ended: the controller already holds its final point
        q, v = prev.state_at(t)
        duration = max(min_time_s, float(np.max(np.abs(v))) / self.config.stop_decel_rad_s2)
        target = np.clip(q + v * duration / 2.0, self._q_min, self._q_max)
        plan = PlannedCommand(np.array([duration]), target[None, :], np.zeros((1, self.num_joints)), None, 0, False,
                              int(now_ns), q, v)
        check_plan(plan, self.config.limits)
        return plan

    def plan(self, actions: np.ndarray, dt_s: float, kind: str, gripper_index: int | None,
             q_observed: np.ndarray, q_now: np.ndarray, observation_ns: int, now_ns: int) -> PlannedCommand:
        """Plan the command for one chunk (chunk mode).

        Args:
            actions: (H, D) chunk in the policy's action space.
            dt_s: time between actions (s).
            kind: an action kind of `retain_ros.droid_action` (velocities are integrated, positions taken as given).
            gripper_index: column of the gripper position, or None.
            q_observed: (J,) joint positions in the observation the chunk was computed from.
            q_now: (J,) latest measured joint positions (where the controller will anchor).
            observation_ns: clock time of the observation.
            now_ns: clock time the command will be sent.

        Returns:
            The command; also remembered for blending the next chunk.

        Raises:
            UnsafeChunk: non-finite or mis-shaped input, every action already in the past, or a start jump too large.
        """
        arm = self._arm_part(actions, gripper_index)
        q_observed, q_now = self._check_state(q_observed, "q_observed"), self._check_state(q_now, "q_now")
        self._check_dt(dt_s)
        targets, clamped = self._targets(arm, dt_s, kind, q_observed)
        elapsed_s = max(0.0, (now_ns - observation_ns) * 1e-9)
        skipped = int(np.floor(elapsed_s / dt_s + 1e-9))
        if skipped >= len(targets):
            raise UnsafeChunk(f"the chunk is {elapsed_s:.3f} s old, past its last action ({len(targets)} x {dt_s} s); "
                              "inference is too slow for this horizon")
        keep = slice(skipped, min(len(targets), skipped + self.config.execute_steps))
        positions = targets[keep]
        times = (np.arange(keep.start, keep.stop) + 1) * dt_s - elapsed_s
        positions = self._blend(positions, times, now_ns)
        clamped |= bool(((positions < self._q_min) | (positions > self._q_max)).any())
        positions = np.clip(positions, self._q_min, self._q_max)
        self._check_jump(positions[0], q_now)
        times = times + max(0.0, self.config.min_lead_time_s - times[0])
        v_start = self._commanded_velocity(now_ns)
        times, slowed = self._respect_limits(positions, times, q_now, v_start, moving_end=True)
        velocities = knot_velocities(q_now, positions, times, moving_end=True)
        tail = braking_tail(positions[-1], velocities[-1], self._ddq_max)
        if tail is not None and np.all((tail[0] >= self._q_min) & (tail[0] <= self._q_max)):
            positions = np.vstack([positions, tail[0]])
            times = np.append(times, times[-1] + tail[1])
            velocities = np.vstack([velocities, np.zeros(self.num_joints)])
        else:  # at rest already, or no room to brake inside the limits: stop at the last action instead
            times, stopped = self._respect_limits(positions, times, q_now, v_start, moving_end=False)
            velocities, tail, slowed = knot_velocities(q_now, positions, times), None, slowed or stopped
        gripper = None
        if gripper_index is not None:
            gripper = float(np.clip(actions[keep.start, gripper_index], 0.0, 1.0))
        plan = PlannedCommand(times, positions, velocities, gripper, skipped, clamped or slowed, int(now_ns), q_now,
                              v_start, braking_tail=tail is not None)
        check_plan(plan, self.limits)
        self._previous = plan
        return plan

    def plan_step(self, action: np.ndarray, dt_s: float, kind: str, gripper_index: int | None,
                  q_now: np.ndarray, now_ns: int) -> PlannedCommand:
        """Plan one streamed step (stream mode): the action re-anchored on the latest measured joint positions.

        Velocity kinds: target = q_now + v dt_s with v in rad/s (DROID: 0.2 rad x the scaled a per step), clamped to
        the velocity limit and to the acceleration limit from the velocity the previous step commanded; positions:
        the action itself, reached no faster than the velocity limit. The single point is reached after
        max(dt_s, min_lead_time_s), positions only.

        Raises:
            UnsafeChunk: non-finite or mis-shaped input, or a target farther than max_start_jump_rad.
        """
        arm = self._arm_part(np.asarray(action, dtype=np.float64).reshape(1, -1), gripper_index)[0]
        q_now = self._check_state(q_now, "q_now")
        self._check_dt(dt_s)
        lead = max(dt_s, self.config.min_lead_time_s)
        if kind in VELOCITY_KINDS:
            requested = arm_velocities_rad_s(arm, kind, dt_s)
            previous = self._previous_step_velocity(now_ns, lead)
            reach = self._ddq_max * lead
            velocity = np.clip(np.clip(requested, -self._dq_max, self._dq_max), previous - reach, previous + reach)
            clamped = bool((velocity != requested).any())
            target = q_now + velocity * lead
        elif kind == JOINT_POSITION:
            target, clamped = arm, False
        else:
            raise UnsafeChunk(f"action kind '{kind}' is unknown; use one of {', '.join(ACTION_KINDS)}")
        clamped |= bool(((target < self._q_min) | (target > self._q_max)).any())
        target = np.clip(target, self._q_min, self._q_max)
        self._check_jump(target, q_now)
        needed = float(np.max(np.abs(target - q_now) / self._dq_max))
        too_far = needed > lead * (1.0 + 1e-9)  # positions too far for one period: slowed down
        duration = needed * 1.001 if too_far else lead
        clamped |= too_far
        gripper = None if gripper_index is None else float(np.clip(action[gripper_index], 0.0, 1.0))
        plan = PlannedCommand(np.array([duration]), target[None, :], None, gripper, 0, clamped, int(now_ns), q_now)
        check_plan(plan, self.limits)
        self._previous = plan
        return plan

    # ------------------------------------------------------------------------------------------------ helpers
    def _arm_part(self, actions: np.ndarray, gripper_index: int | None) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] < 1:
            raise UnsafeChunk(f"a chunk must be (H, D) with H >= 1, got shape {actions.shape}")
        if not np.isfinite(actions).all():
            bad = np.argwhere(~np.isfinite(actions))[0].tolist()
            raise UnsafeChunk(f"the chunk contains NaN/inf (first at step {bad[0]}, dim {bad[1]}); not executed, the "
                              "controller keeps holding")
        columns = [c for c in range(actions.shape[1]) if c != gripper_index]
        if len(columns) != self.num_joints:
            raise UnsafeChunk(f"the chunk has {len(columns)} arm values per action but {self.num_joints} joints are "
                              "commanded; check joint_names against the policy's action space")
        return actions[:, columns]

    def _check_state(self, q: np.ndarray, what: str) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (self.num_joints,) or not np.isfinite(q).all():
            raise UnsafeChunk(f"{what} must be {self.num_joints} finite joint positions, got {q.tolist()}")
        return q

    @staticmethod
    def _check_dt(dt_s: float) -> None:
        if not (np.isfinite(dt_s) and dt_s > 0):
            raise UnsafeChunk(f"chunk dt_s={dt_s} must be a positive number")

    def _check_jump(self, first: np.ndarray, q_now: np.ndarray) -> None:
        jump = float(np.max(np.abs(first - q_now)))
        if jump > self.config.max_start_jump_rad:
            raise UnsafeChunk(f"the first target is {jump:.3f} rad from the measured state (limit "
                              f"max_start_jump_rad={self.config.max_start_jump_rad}); chunk rejected")

    def _commanded_velocity(self, now_ns: int) -> np.ndarray:
        """The velocity the running command asks for now (zero when none runs): where the next one starts from."""
        prev = self._previous
        if prev is None:
            return np.zeros(self.num_joints)
        return prev.state_at((int(now_ns) - prev.sent_ns) * 1e-9)[1]

    def _previous_step_velocity(self, now_ns: int, lead_s: float) -> np.ndarray:
        """The speed the stream was commanding: the last step's while the next follows within a period of its end.

        A step ends as the next tick comes, with the arm still moving; later, the running command's speed, or zero.
        """
        prev = self._previous
        if prev is not None and prev.velocities is None and (now_ns - prev.sent_ns) * 1e-9 <= prev.duration_s + lead_s:
            return (prev.positions[0] - prev.start) / prev.times_s[0]
        return self._commanded_velocity(now_ns)

    def _targets(self, arm: np.ndarray, dt_s: float, kind: str, q_observed: np.ndarray) -> tuple[np.ndarray, bool]:
        if kind in VELOCITY_KINDS:  # the path at full speed; speed_scale stretches time, not the path
            return integrate_velocities(q_observed, arm, kind, dt_s, self.config.limits.dq_max)
        if kind == JOINT_POSITION:
            return arm.copy(), False
        raise UnsafeChunk(f"action kind '{kind}' is unknown; use one of {', '.join(ACTION_KINDS)}")

    def _blend(self, positions: np.ndarray, times: np.ndarray, now_ns: int) -> np.ndarray:
        """Mix in the previous plan where it still runs: w * old + (1 - w) * new at the same absolute time."""
        prev, w = self._previous, self.config.blend_weight
        if prev is None or w <= 0.0:
            return positions
        prev_times = prev.times_s + (prev.sent_ns - now_ns) * 1e-9  # previous points on this plan's time axis
        overlap = times <= prev_times[-1]
        if not np.any(overlap) or prev_times[-1] <= 0:
            return positions
        out = positions.copy()
        for j in range(positions.shape[1]):
            old = np.interp(times[overlap], prev_times, prev.positions[:, j])
            out[overlap, j] = w * old + (1.0 - w) * positions[overlap, j]
        return out

    def _respect_limits(self, positions: np.ndarray, times: np.ndarray, q_now: np.ndarray, v_start: np.ndarray,
                        moving_end: bool, max_rounds: int = 100) -> tuple[np.ndarray, bool]:
        """Stretch segments until the controller's splines stay within the velocity and acceleration limits.

        The splines are the ones the JTC will run (`splines.hermite_peaks`): from (q_now, v_start) through the points
        with monotone knot velocities, to rest at the last point or (moving_end) through it into a braking tail, which
        meets the limits by construction. Only time stretches; the path is kept.

        Raises:
            UnsafeChunk: no stretch found within `max_rounds` (nothing is commanded).
        """
        steps = np.diff(np.concatenate([[0.0], times]))
        delta = positions - np.vstack([q_now, positions[:-1]])
        stretched = np.maximum(steps, np.max(np.abs(delta) / self._dq_max, axis=1) * 1.001)
        for _ in range(max_rounds):
            ratio = limit_ratio(q_now, v_start, positions, np.cumsum(stretched), self._dq_max, self._ddq_max,
                                moving_end)
            if np.all(ratio <= 1.0 + 1e-9):
                return np.cumsum(stretched), bool((stretched > steps).any())
            bad = ratio > 1.0
            stretched[bad] *= np.minimum(ratio[bad], 2.0) * 1.001
        raise UnsafeChunk("no timing of the chunk keeps the controller's motion within velocity_max and "
                          "acceleration_max; chunk rejected")


def limit_ratio(start: np.ndarray, start_velocity: np.ndarray, positions: np.ndarray, times_s: np.ndarray,
                dq_max: np.ndarray, ddq_max: np.ndarray, moving_end: bool = False) -> np.ndarray:
    """(N,) for each spline segment through these points, how far it is over the limits (<= 1: within).

    Acceleration scales with 1/time^2, so its ratio is square-rooted: stretching a segment by the ratio brings both
    within.
    """
    velocities = knot_velocities(start, positions, times_s, moving_end)
    v_ratio, a_ratio = spline_ratios(start, start_velocity, positions, velocities, times_s, dq_max, ddq_max)
    return np.maximum(v_ratio, np.sqrt(a_ratio))


def spline_ratios(start: np.ndarray, start_velocity: np.ndarray, positions: np.ndarray, velocities: np.ndarray,
                  times_s: np.ndarray, dq_max: np.ndarray, ddq_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) peak velocity / limit and (N,) peak acceleration / limit of each cubic segment, worst joint.

    The first segment may keep the speed the arm already has (no command can change the present).
    """
    peak_v, peak_a = hermite_peaks(start, start_velocity, positions, velocities, times_s)
    allowed_v = np.tile(np.asarray(dq_max, float), (len(times_s), 1))
    allowed_v[0] = np.maximum(allowed_v[0], np.abs(start_velocity))
    return np.max(peak_v / allowed_v, axis=1), np.max(peak_a / np.asarray(ddq_max), axis=1)


def check_plan(plan: PlannedCommand, limits: JointLimits) -> None:
    """The last line of defence before a command leaves the node.

    Raises:
        UnsafeChunk: non-finite values, non-increasing or non-positive times, a position outside the limits, a velocity
            or a segment's speed (from the start state too) over the limits, or a nonzero final velocity.
    """
    arrays = [plan.times_s, plan.positions, plan.start] + ([] if plan.velocities is None else [plan.velocities])
    if not all(np.isfinite(a).all() for a in arrays):
        raise UnsafeChunk("planned command contains non-finite values")
    if plan.times_s[0] <= 0 or (np.diff(plan.times_s) <= 0).any():
        raise UnsafeChunk(f"time_from_start must be positive and strictly increase, got {plan.times_s.tolist()}")
    if (plan.positions < np.asarray(limits.q_min)).any() or (plan.positions > np.asarray(limits.q_max)).any():
        raise UnsafeChunk("planned positions leave the joint limits")
    speeds = segment_speeds(plan.start, plan.positions, plan.times_s)
    if (np.abs(speeds) > np.asarray(limits.dq_max) * (1.0 + 1e-6)).any():
        raise UnsafeChunk("a planned segment is faster than the velocity limits")
    if plan.velocities is not None:
        if (plan.velocities[-1] != 0.0).any():
            raise UnsafeChunk("planned velocities do not end at zero")
        ratios = spline_ratios(plan.start, plan.initial_velocity, plan.positions, plan.velocities, plan.times_s,
                               limits.dq_max, limits.ddq_max)
        if any((r > 1.0 + 1e-6).any() for r in ratios):
            raise UnsafeChunk("the controller's spline through the planned points exceeds the velocity or "
                              "acceleration limits")
