"""Action chunk -> safe joint trajectory for a joint_trajectory_controller (plain logic, no ROS).

Every command is planned from the state the controller will start it from. ros2_controllers' JTC anchors a new
trajectory at the arm's MEASURED position and velocity when it first samples it (docs/robot.md cites the lines), so
the plan starts from the newest joint state, extrapolated to the send time with its velocity, with a bound on how far
that estimate can be off (`StartState`); without measured velocities the running command's velocity stands in (a stop
is a running command too: nothing is ever assumed at rest while it moves). Every check holds for each corner of that
bound: each joint's cubic is affine in its start, so its extremes over the box are at the corners.

Two execution modes (`ExecutorConfig.mode`):
- 'chunk': one trajectory per chunk (`plan`):
  1. reject anything non-finite (the chunk is dropped; the controller keeps holding);
  2. arm part -> absolute joint targets: joint velocities (DROID's normalised a, converted as DROID does, or rad/s)
     are clamped to the velocity limits and integrated from the joint positions the policy saw (action k reaches its
     target at (k + 1) dt after the observation), or absolute positions are taken as they are;
  3. drop the actions whose target time passed while the model ran (latency compensation);
  4. keep `execute_steps` actions, optionally blended with the remainder of the previous chunk;
  5. clamp to the position limits; give the first point at least `min_lead_time_s`; stretch segments until the
     controller's cubic splines (from the start state) stay within the scaled velocity and acceleration limits; when
     no timing from the moving start can (a reversal, or a first segment that would overshoot a position limit),
     brake to rest first along the current motion, then run the chunk from there;
  6. check the result once more (`check_plan`): closed-form extremes of every segment, the first included.
- 'stream': one single-point trajectory per control period (`plan_step`), as DROID and openpi's DROID client execute:
  the action's step is re-anchored on the LATEST measured joint positions (target = q_now + v dt), positions only, so
  the controller moves at constant speed to it. The whole joint vector is scaled together (the direction is kept)
  to the scaled velocity limit and to the scaled acceleration limit from the set-point velocity the controller has
  when the step arrives (zero once the previous step has ended). Each step takes `STEP_OVERLAP` periods, so the
  controller is still moving when the next one comes and streaming is continuous.
`speed_scale` scales the velocity and acceleration limits (low for first runs on a robot); paths are kept, only time
stretches (chunk mode) or steps shrink (stream mode).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from retain_ros.control.splines import (braking_tail, hermite_peaks, hermite_position_range, hermite_state,
                                        knot_velocities, segment_speeds)
from retain_ros.control.workspace import Workspace
from retain_ros.droid_action import (ACTION_KINDS, JOINT_POSITION, VELOCITY_KINDS, arm_velocities_rad_s,
                                     integrate_velocities)
from retain_ros.errors import ConfigError
from retain_ros.fr3 import FR3_DDQ_MAX, FR3_DQ_MAX, FR3_Q_MAX, FR3_Q_MIN

EXECUTION_MODES = ("chunk", "stream")
STEP_OVERLAP = 1.25  # a streamed step lasts this many periods: the next one arrives while the controller still moves
TRACKING_ACCEL_FRACTION = 0.1  # of the acceleration limit: how far the arm's motion may stray from the command's


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
        stop_decel_rad_s2: deceleration of the stop command sent when commanding stops mid-chunk, at most the scaled
            acceleration limit; more (up to the unscaled limit) only where the room left before a position limit
            needs it.
        speed_scale: factor (0, 1] on the velocity and acceleration limits.
        min_lead_time_s: the first point is reached no sooner than this after the command is sent, so a small
            mismatch between the measured state and the first target is not crossed at full speed.
        mode: 'chunk' (one trajectory per chunk) or 'stream' (one re-anchored step per control period).
        workspace: where the FR3's hand and links may go (forward kinematics of every planned point); None = joint
            limits only.
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
    workspace: Workspace | None = None

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
        if self.workspace is not None and len(self.limits.q_min) != 7:
            raise ConfigError(f"the workspace check knows the FR3's 7 joints, the limits have {len(self.limits.q_min)}")


@dataclass(frozen=True)
class MeasuredState:
    """The newest joint state message of the arm.

    Attributes:
        positions: (J,) joint positions (rad).
        velocities: (J,) joint velocities (rad/s), or None when the message carries none.
        age_s: how long before the controller's first sample of the command the state was measured (s): its age when
            planned plus the delay until the controller reads the command.
    """

    positions: np.ndarray
    velocities: np.ndarray | None = None
    age_s: float = 0.0


@dataclass(frozen=True)
class StartState:
    """The state the controller will start the next command from: an estimate and a bound on its error.

    Attributes:
        positions: (J,) estimated joint positions at the controller's first sample (rad).
        velocities: (J,) estimated joint velocities then (rad/s).
        position_error: (J,) the true positions are within +- this of the estimate.
        velocity_error: (J,) the true velocities are within +- this of the estimate.
    """

    positions: np.ndarray
    velocities: np.ndarray
    position_error: np.ndarray
    velocity_error: np.ndarray

    @classmethod
    def exact(cls, positions: np.ndarray, velocities: np.ndarray | None = None) -> StartState:
        """A start known exactly (at rest when `velocities` is None)."""
        positions = np.asarray(positions, float)
        zeros = np.zeros_like(positions)
        return cls(positions, zeros if velocities is None else np.asarray(velocities, float), zeros, zeros)

    def corners(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The four (positions, velocities) corners of the error box.

        Each joint's cubic is affine in its own start, so its extreme position, velocity and acceleration over the
        whole box are reached at one of these corners.
        """
        q, v, dq, dv = self.positions, self.velocities, self.position_error, self.velocity_error
        if not (dq.any() or dv.any()):
            return [(q, v)]
        return [(q + sq * dq, v + sv * dv) for sq in (-1.0, 1.0) for sv in (-1.0, 1.0)]


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
        start: (J,) the joint positions the controller is expected to start from.
        start_velocity: (J,) the velocity it starts from (cubic), or, for a positions-only step, the set-point velocity
            the controller had before it (the step's speed may differ from it by the acceleration limit x its
            duration); None = at rest.
        braking_tail: the last point is not an action but the rest point of a constant deceleration after them.
        start_position_error: (J,) bound on the error of `start` (None = exact).
        start_velocity_error: (J,) bound on the error of `start_velocity` (None = exact).
        braked: the first point brings the arm to rest from its motion before the chunk's actions (they could not
            be reached from the moving state within the limits).
        is_stop: the command stops the arm (`ChunkExecutor.stop`).
        note: why a stop could not keep every scaled limit (a stop is sent anyway: it is the best there is).
        gripper_times_s: (M,) when each executed action's gripper position is due (s after sending, first 0): an
            action's gripper holds while the arm moves to that action's point, as a 15 Hz DROID loop sends it. None =
            `gripper` only, from the start.
        gripper_positions: (M,) those positions (0 open .. 1 closed).
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
    start_position_error: np.ndarray | None = None
    start_velocity_error: np.ndarray | None = None
    braked: bool = False
    is_stop: bool = False
    note: str = ""
    gripper_times_s: np.ndarray | None = None
    gripper_positions: np.ndarray | None = None

    def gripper_at(self, t_s: float) -> float | None:
        """The gripper position due `t_s` after the command was sent (the last one due by then), or None.

        A chunk that closes the gripper at its 5th action closes it there, not only when a later chunk starts with
        the close: a policy re-queried every few actions may keep predicting the close a few actions ahead.
        """
        if self.gripper_positions is None:
            return self.gripper
        k = int(np.searchsorted(self.gripper_times_s, t_s + 1e-9, side="right")) - 1
        return float(self.gripper_positions[max(k, 0)])

    @property
    def actions_end_s(self) -> float:
        """Time the last action is reached (the braking tail after it runs only when no next command comes)."""
        return float(self.times_s[self.actions_executed - 1])

    @property
    def actions_executed(self) -> int:
        """Points that are the chunk's actions (neither the braking tail nor a braking point before them)."""
        return len(self.times_s) - int(self.braking_tail) - int(self.braked)

    @property
    def duration_s(self) -> float:
        """Time until the last point is reached."""
        return float(self.times_s[-1])

    @property
    def initial_velocity(self) -> np.ndarray:
        """The velocity the command starts from (zeros when at rest)."""
        return np.zeros_like(self.start) if self.start_velocity is None else self.start_velocity

    @property
    def start_state(self) -> StartState:
        """The start and its error bound."""
        zeros = np.zeros_like(self.start)
        dq = zeros if self.start_position_error is None else self.start_position_error
        dv = zeros if self.start_velocity_error is None else self.start_velocity_error
        return StartState(self.start, self.initial_velocity, dq, dv)

    def state_at(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(positions, velocities) the controller's interpolation gives `t_s` after the command was sent.

        Positions and velocities -> cubic Hermite segments (as the JTC's splines); positions only -> linear. After the
        last point the controller holds it (zero velocity).
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
    """Turns action chunks into `PlannedCommand`s; remembers the running command (a stop too).

    Args:
        config: execution settings.
    """

    def __init__(self, config: ExecutorConfig) -> None:
        self._previous: PlannedCommand | None = None
        self._settling_ddq: np.ndarray | None = None
        self._config = config
        self.config = config

    @property
    def config(self) -> ExecutorConfig:
        """The execution settings; assigning new ones takes effect with the next chunk."""
        return self._config

    @config.setter
    def config(self, config: ExecutorConfig) -> None:
        old = getattr(self, "_ddq_max", None)
        self._config = config
        self.limits = config.limits.scaled(config.speed_scale)
        self._q_min = np.asarray(config.limits.q_min, float) + config.position_margin_rad
        self._q_max = np.asarray(config.limits.q_max, float) - config.position_margin_rad
        self._dq_max = np.asarray(self.limits.dq_max, float)
        self._ddq_max = np.asarray(self.limits.ddq_max, float)
        if old is not None and old.shape == self._ddq_max.shape:  # the running command may still accelerate as
            self._settling_ddq = np.maximum(old, self._ddq_max)   # fast as the old limits allowed

    @property
    def num_joints(self) -> int:
        """Arm joints the executor commands."""
        return len(self._dq_max)

    def start_state(self, measured: MeasuredState | np.ndarray, now_ns: int) -> StartState:
        """Where the controller will start a command sent at `now_ns`, from the newest joint state.

        The measurement is carried forward over its age by what the running command did in that time (the arm follows
        it), or, with no command running, by its own velocity; without measured velocities the running command's
        velocity stands in for the arm's. The error bound is the part of the arm's acceleration the running command
        does not explain (`TRACKING_ACCEL_FRACTION` of the acceleration limit) acting over that age.
        """
        m = self._measured(measured)
        age = m.age_s
        prev = self._previous
        if prev is not None:
            t_now = (int(now_ns) - prev.sent_ns) * 1e-9
            q_then, v_then = prev.state_at(t_now - age)
            q_cmd, v_cmd = prev.state_at(t_now)
            q = m.positions + (q_cmd - q_then)
            v = v_cmd if m.velocities is None else m.velocities + (v_cmd - v_then)
        else:
            v = np.zeros(self.num_joints) if m.velocities is None else m.velocities
            q = m.positions + v * age
        ddq = self._ddq_max if self._settling_ddq is None else self._settling_ddq
        dv = TRACKING_ACCEL_FRACTION * ddq * age
        return StartState(q, v, 0.5 * dv * age, dv)

    def stop(self, now_ns: int, measured: MeasuredState | np.ndarray | None = None,
             min_time_s: float = 0.1) -> PlannedCommand | None:
        """A command that brings the arm to rest from its motion; None when no command runs (the controller holds).

        Sent when commanding stops (stale stream, pause, rejected chunk, deactivate, shutdown) so the arm does not
        finish a chunk computed from inputs that are no longer trusted. Never raises: it decelerates along the current
        motion (no reversal) at `stop_decel_rad_s2`, at most the scaled acceleration limit, for as long as that takes;
        where the room left before a position limit (inside `position_margin_rad`, then the limit itself) is shorter,
        it brakes harder: to the scaled acceleration limit, then up to the unscaled one. A stop that cannot keep a limit
        even so is still sent (it is the best there is) and says why in its `note`.
        The stop becomes the running command: the next plan starts from its deceleration, not from rest.
        """
        prev = self._previous
        if prev is None or (int(now_ns) - prev.sent_ns) * 1e-9 >= prev.duration_s:
            return None  # nothing runs: the controller already holds its last point
        if measured is None:
            start = StartState.exact(*self._commanded_state(now_ns))
        else:
            start = self.start_state(measured, now_ns)
        plan = self._brake(start, now_ns, min_time_s)
        self._previous = plan
        return plan

    def plan(self, actions: np.ndarray, dt_s: float, kind: str, gripper_index: int | None,
             q_observed: np.ndarray, measured: MeasuredState | np.ndarray, observation_ns: int,
             now_ns: int) -> PlannedCommand:
        """Plan the command for one chunk (chunk mode).

        Args:
            actions: (H, D) chunk in the policy's action space.
            dt_s: time between actions (s).
            kind: an action kind of `retain_ros.droid_action` (velocities are integrated, positions taken as given).
            gripper_index: column of the gripper position, or None.
            q_observed: (J,) joint positions in the observation the chunk was computed from.
            measured: the newest joint state (where the controller will anchor); an array = positions measured now.
            observation_ns: clock time of the observation.
            now_ns: clock time the command will be sent.

        Returns:
            The command; also remembered for blending the next chunk.

        Raises:
            UnsafeChunk: non-finite or mis-shaped input, every action already in the past, a start jump too large, or
                no timing within the limits (the caller then stops the arm).
        """
        arm = self._arm_part(actions, gripper_index)
        q_observed = self._check_state(q_observed, "q_observed")
        start = self.start_state(measured, now_ns)
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
        self._check_jump(positions[0], start.positions)
        times = times + max(0.0, self.config.min_lead_time_s - times[0])
        timed = self._fit(start, positions, times)
        braked = timed is None
        if braked:  # no timing from the moving start: brake to rest along the motion, then run the chunk from there
            timed = self._after_braking(start, positions, times)
        points, times, velocities, tail, slowed = timed
        gripper = gripper_times = gripper_positions = None
        if gripper_index is not None:
            gripper_positions = np.clip(np.asarray(actions, dtype=np.float64)[keep, gripper_index], 0.0, 1.0)
            reached = times[int(braked):int(braked) + len(positions)]  # when each action's point is reached
            gripper_times = np.concatenate([[0.0], reached[:-1]])  # each action's gripper: on the way to its point
            gripper = float(gripper_positions[0])
        plan = PlannedCommand(times, points, velocities, gripper, skipped, clamped or slowed or braked, int(now_ns),
                              start.positions, start.velocities, braking_tail=tail,
                              start_position_error=start.position_error,
                              start_velocity_error=start.velocity_error, braked=braked,
                              gripper_times_s=gripper_times, gripper_positions=gripper_positions)
        check_plan(plan, self.limits, self.config.position_margin_rad)
        self._check_workspace(plan)
        self._previous, self._settling_ddq = plan, None
        return plan

    def plan_step(self, action: np.ndarray, dt_s: float, kind: str, gripper_index: int | None,
                  measured: MeasuredState | np.ndarray, now_ns: int) -> PlannedCommand:
        """Plan one streamed step (stream mode): the action re-anchored on the latest measured joint positions.

        Velocity kinds: target = q_now + v dt_s with v in rad/s (DROID: 0.2 rad x the scaled a per step); positions:
        the step towards the action. The step's velocity vector is scaled as a whole (its direction kept) to the
        velocity limit and to the acceleration limit from the set-point velocity the controller has now; only where
        no scaling of it can (the arm still moves another way) does each joint change speed on its own, by at most
        the acceleration limit. The single point is reached after `STEP_OVERLAP` x max(dt_s, min_lead_time_s),
        positions only.

        Raises:
            UnsafeChunk: non-finite or mis-shaped input, or a target farther than max_start_jump_rad.
        """
        arm = self._arm_part(np.asarray(action, dtype=np.float64).reshape(1, -1), gripper_index)[0]
        start = self.start_state(measured, now_ns)
        self._check_dt(dt_s)
        lead = max(dt_s, self.config.min_lead_time_s)
        duration = STEP_OVERLAP * lead
        if kind in VELOCITY_KINDS:
            requested = arm_velocities_rad_s(arm, kind, dt_s) * lead / duration
        elif kind == JOINT_POSITION:
            requested = (arm - start.positions) / duration
        else:
            raise UnsafeChunk(f"action kind '{kind}' is unknown; use one of {', '.join(ACTION_KINDS)}")
        reference = self._set_point_velocity(now_ns, start)
        speed = self._step_speed(requested, reference, duration, start.position_error / duration, start.positions)
        clamped = not np.allclose(speed, requested, rtol=1e-12, atol=1e-12)
        target = start.positions + speed * duration
        clamped |= bool(((target < self._q_min) | (target > self._q_max)).any())
        target = np.clip(target, self._q_min, self._q_max)
        self._check_jump(target, start.positions)
        gripper = None if gripper_index is None else float(np.clip(action[gripper_index], 0.0, 1.0))
        plan = PlannedCommand(np.array([duration]), target[None, :], None, gripper, 0, clamped, int(now_ns),
                              start.positions, reference, start_position_error=start.position_error)
        check_plan(plan, self.limits, self.config.position_margin_rad)
        self._check_workspace(plan)
        self._previous, self._settling_ddq = plan, None
        return plan

    def plan_move(self, target: np.ndarray, measured: MeasuredState | np.ndarray, now_ns: int,
                  speed_scale: float) -> PlannedCommand:
        """A slow move to `target`, ending at rest (the ~/home service).

        An arm still moving first brakes to rest along its motion exactly as `stop` would (a brake is never refused:
        where it cannot keep a limit, say at speed next to a joint limit, it is the best there is and `note` says
        why). From that rest point, one segment of the controller's cubic, timed so that its peak speed (1.5 d / T)
        and acceleration (6 d / T^2) stay within `speed_scale` x the limits, is checked like a chunk: joint limits on
        the controller's spline, and the workspace at every 0.02 rad of the longest joint move along it. The move
        becomes the running command (a later stop brakes it).

        Raises:
            UnsafeChunk: a non-finite or mis-sized target, a target outside the joint limits, or a path that leaves
                the workspace.
        """
        if not 0.0 < speed_scale <= 1.0:
            raise UnsafeChunk(f"speed_scale={speed_scale} of a move must be in (0, 1]")
        target = self._check_state(target, "move target")
        if ((target < self._q_min) | (target > self._q_max)).any():
            raise UnsafeChunk(f"the move target {np.round(target, 3).tolist()} is outside the joint limits "
                              f"(position_min / position_max, {self.config.position_margin_rad} rad inside)")
        start = self.start_state(measured, now_ns)
        brake = self._brake(start, now_ns) if np.abs(start.velocities).max() > 1e-3 else None
        origin = start.positions if brake is None else brake.positions[-1]
        distance = np.abs(target - origin)
        dq_max = np.asarray(self.config.limits.dq_max, float) * speed_scale
        ddq_max = np.asarray(self.config.limits.ddq_max, float) * speed_scale
        duration = max(float(np.max(1.5 * distance / dq_max)), float(np.sqrt(np.max(6.0 * distance / ddq_max))),
                       self.config.min_lead_time_s, 0.1)
        rest = start if brake is None else StartState.exact(origin)  # the measured state with its error, or the brake's
        move = PlannedCommand(np.array([duration]), target[None, :], np.zeros((1, self.num_joints)), None, 0, False,
                              int(now_ns), rest.positions, rest.velocities, start_position_error=rest.position_error,
                              start_velocity_error=rest.velocity_error)
        check_plan(move, self.config.limits, self.config.position_margin_rad)
        if self.config.workspace is not None:
            samples = max(21, int(np.ceil(distance.max() / 0.02)) + 1)  # every 0.02 rad of the longest move
            path = origin + np.linspace(0.0, 1.0, samples)[:, None] * (target - origin)
            reason = self.config.workspace.problem(path, start.positions)
            if reason is not None:
                raise UnsafeChunk(f"the straight joint-space path to the move target: {reason}; move the arm "
                                  "closer by hand first")
        if brake is not None:  # both segments meet at rest, so each was checked on its own
            move = replace(brake, times_s=np.array([brake.duration_s, brake.duration_s + duration]),
                           positions=np.vstack([origin, target]), velocities=np.zeros((2, self.num_joints)),
                           is_stop=False)
        self._previous, self._settling_ddq = move, None
        return move

    # ------------------------------------------------------------------------------------------------ helpers
    def _brake(self, start: StartState, now_ns: int, min_time_s: float = 0.1) -> PlannedCommand:
        """The stop command from `start` (`stop`); checked, and where it cannot keep a limit, sent with a `note`."""
        duration, travel = self._stop_shape(start, min_time_s)
        target = start.positions + np.sign(start.velocities) * travel
        plan = PlannedCommand(np.array([duration]), target[None, :], np.zeros((1, self.num_joints)), None, 0, False,
                              int(now_ns), start.positions, start.velocities,
                              start_position_error=start.position_error, start_velocity_error=start.velocity_error,
                              is_stop=True)
        try:
            check_plan(plan, self.config.limits, self.config.position_margin_rad)
        except UnsafeChunk as exc:
            velocities = np.round(start.velocities, 3).tolist()
            return replace(plan, note=f"the arm cannot stop within every limit from {velocities} rad/s: {exc}",
                           clamped=True)
        return plan

    def _stop_shape(self, start: StartState, min_time_s: float) -> tuple[float, np.ndarray]:
        """(duration, per-joint travel) of the gentlest stop that fits.

        One duration for all joints, but each joint's cubic to rest is shaped on its own (`stop_travel`): constant
        deceleration where the room allows, shorter where a joint is near a limit, so one slow joint next to its limit
        does not force a hard stop on the others. Durations are tried from the gentlest down, in this order of
        preference: inside the margin at the scaled acceleration, inside the limits at the scaled acceleration, inside
        the limits at up to the unscaled acceleration; else the unscaled acceleration's duration (a limit is then
        passed: physics).
        """
        q, v, dq, dv = start.positions, start.velocities, start.position_error, start.velocity_error
        hardware_ddq = np.asarray(self.config.limits.ddq_max, float)
        gentle = max(min_time_s, _braking_time(v, dv, dq, np.minimum(self.config.stop_decel_rad_s2, self._ddq_max)))
        hardest = max(1e-3, _braking_time(v, dv, dq, hardware_ddq))
        real_lo, real_hi = np.asarray(self.config.limits.q_min, float), np.asarray(self.config.limits.q_max, float)
        durations = np.geomspace(gentle, min(hardest, gentle), 64) if hardest < gentle else np.array([gentle])
        tiers = ((self._q_min, self._q_max, self._ddq_max), (real_lo, real_hi, self._ddq_max),
                 (real_lo, real_hi, hardware_ddq))
        for lo, hi, ddq in tiers:
            room = np.maximum(np.where(v > 0, hi - q, q - lo), 0.0)
            for duration in durations:  # the start's error may carry each corner dq + 4/27 dv T further
                spare = np.maximum(room - dq - 4.0 / 27.0 * dv * duration, 0.0)
                travel, fits, decel = stop_travel(np.abs(v), float(duration), spare)
                if fits.all() and np.all(decel + 4.0 * dv / duration + 6.0 * dq / duration ** 2 <= ddq * (1 + 1e-9)):
                    return float(duration), travel
        room = np.maximum(np.where(v > 0, real_hi - q, q - real_lo), 0.0)
        return hardest, stop_travel(np.abs(v), hardest, room)[0]

    def _measured(self, measured: MeasuredState | np.ndarray) -> MeasuredState:
        if not isinstance(measured, MeasuredState):
            measured = MeasuredState(np.asarray(measured, dtype=np.float64))
        q = self._check_state(measured.positions, "the measured joint positions")
        v = measured.velocities
        if v is not None:
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            if v.shape != q.shape or not np.isfinite(v).all():
                raise UnsafeChunk(f"the measured joint velocities must be {self.num_joints} finite numbers, got "
                                  f"{v.tolist()}")
        if not (np.isfinite(measured.age_s) and measured.age_s >= 0.0):
            raise UnsafeChunk(f"the joint state's age must be >= 0 s, got {measured.age_s}")
        return MeasuredState(q, v, float(measured.age_s))

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

    def _check_workspace(self, plan: PlannedCommand) -> None:
        """Every planned point's hand inside the box and the whole arm above the table (stops are exempt)."""
        if self.config.workspace is not None:
            reason = self.config.workspace.problem(plan.positions, plan.start)
            if reason is not None:
                raise UnsafeChunk(reason)

    @staticmethod
    def _check_dt(dt_s: float) -> None:
        if not (np.isfinite(dt_s) and dt_s > 0):
            raise UnsafeChunk(f"chunk dt_s={dt_s} must be a positive number")

    def _check_jump(self, first: np.ndarray, q_now: np.ndarray) -> None:
        jump = float(np.max(np.abs(first - q_now)))
        if jump > self.config.max_start_jump_rad:
            raise UnsafeChunk(f"the first target is {jump:.3f} rad from the measured state (limit "
                              f"max_start_jump_rad={self.config.max_start_jump_rad}); chunk rejected")

    def _commanded_state(self, now_ns: int) -> tuple[np.ndarray | None, np.ndarray]:
        """(positions or None, velocity) the running command asks for now; zero velocity when none runs."""
        prev = self._previous
        if prev is None:
            return None, np.zeros(self.num_joints)
        return prev.state_at((int(now_ns) - prev.sent_ns) * 1e-9)

    def _set_point_velocity(self, now_ns: int, start: StartState) -> np.ndarray:
        """The controller's set-point velocity now.

        The running command's (zero once it has ended), or, when this executor has sent nothing yet, the arm's own.
        """
        if self._previous is None:
            return start.velocities
        return self._commanded_state(now_ns)[1]

    def _step_speed(self, requested: np.ndarray, reference: np.ndarray, duration: float,
                    uncertainty: np.ndarray, q: np.ndarray) -> np.ndarray:
        """The step's velocity: `requested` scaled as a whole into the limits.

        Within the velocity limit and within the acceleration limit x `duration` of `reference`; per joint only where
        no common scale fits; and towards a position limit no faster than a stop from the step's end can brake inside
        it. `uncertainty` (rad/s, from the start position's error, `q`) is kept free on both bounds.
        """
        vmax = np.maximum(self._dq_max - uncertainty, 0.0)
        reach = np.maximum(self._ddq_max * duration - uncertainty, 0.0)
        lo, hi = np.maximum(-vmax, reference - reach), np.minimum(vmax, reference + reach)
        # no faster towards a position limit than a stop can still brake from within it: u d + u^2 / 2a <= room
        a, d = self._ddq_max, duration
        up, down = np.maximum(self._q_max - q, 0.0), np.maximum(q - self._q_min, 0.0)
        hi = np.minimum(hi, np.maximum(-a * d + np.sqrt((a * d) ** 2 + 2.0 * a * up), 0.0))
        lo = np.maximum(lo, -np.maximum(-a * d + np.sqrt((a * d) ** 2 + 2.0 * a * down), 0.0))
        slowing = lo > hi  # faster than the limit already: slow down as fast as allowed
        brake = reference - np.sign(reference) * reach
        lo, hi = np.where(slowing, brake, lo), np.where(slowing, brake, hi)
        s_lo, s_hi = 0.0, 1.0
        for r, a, b in zip(requested, lo, hi):
            if r > 0:
                s_lo, s_hi = max(s_lo, a / r), min(s_hi, b / r)
            elif r < 0:
                s_lo, s_hi = max(s_lo, b / r), min(s_hi, a / r)
            elif not a <= 0.0 <= b:
                s_lo = np.inf
        if s_lo <= s_hi:
            return requested * s_hi
        return np.clip(requested, lo, hi)

    def _targets(self, arm: np.ndarray, dt_s: float, kind: str, q_observed: np.ndarray) -> tuple[np.ndarray, bool]:
        if kind in VELOCITY_KINDS:  # the path at full speed; speed_scale stretches time, not the path
            return integrate_velocities(q_observed, arm, kind, dt_s, self.config.limits.dq_max)
        if kind == JOINT_POSITION:
            return arm.copy(), False
        raise UnsafeChunk(f"action kind '{kind}' is unknown; use one of {', '.join(ACTION_KINDS)}")

    def _blend(self, positions: np.ndarray, times: np.ndarray, now_ns: int) -> np.ndarray:
        """Mix in the previous chunk where it still runs: w * old + (1 - w) * new at the same absolute time."""
        prev, w = self._previous, self.config.blend_weight
        if prev is None or w <= 0.0 or prev.is_stop:
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

    def _fit(self, start: StartState, positions: np.ndarray, times: np.ndarray):
        """(points, times, velocities, braking tail?, slowed?) through `positions` from `start`.

        None when no timing keeps the controller's splines within the limits.
        """
        fitted = self._respect_limits(positions, times, start, moving_end=True)
        if fitted is None:
            return None
        times, slowed = fitted
        velocities = knot_velocities(start.positions, positions, times, moving_end=True)
        tail = braking_tail(positions[-1], velocities[-1], self._ddq_max)
        if tail is not None and np.all((tail[0] >= self._q_min) & (tail[0] <= self._q_max)):
            return (np.vstack([positions, tail[0]]), np.append(times, times[-1] + tail[1]),
                    np.vstack([velocities, np.zeros(self.num_joints)]), True, slowed)
        # at rest already, or no room to brake inside the limits: stop at the last action instead
        fitted = self._respect_limits(positions, times, start, moving_end=False)
        if fitted is None:
            return None
        times, stopped = fitted
        return positions, times, knot_velocities(start.positions, positions, times), False, slowed or stopped

    def _after_braking(self, start: StartState, positions: np.ndarray, times: np.ndarray):
        """The chunk after a braking point that brings the arm to rest along its motion (`stop`'s deceleration).

        Raises:
            UnsafeChunk: the braking point leaves the position limits, or no timing from rest fits.
        """
        q, v = start.positions, start.velocities
        brake_s = max(1e-3, _braking_time(v, start.velocity_error, start.position_error, self._ddq_max))
        rest = q + v * brake_s / 2.0
        if np.any((rest < self._q_min) | (rest > self._q_max)):
            raise UnsafeChunk("the arm cannot come to rest inside the position limits at the scaled acceleration "
                              "limit; chunk rejected (the stop brakes harder)")
        timed = self._fit(StartState.exact(rest), positions, times)
        if timed is None:
            raise UnsafeChunk("no timing of the chunk keeps the controller's motion within velocity_max and "
                              "acceleration_max; chunk rejected")
        points, rest_times, velocities, tail, slowed = timed
        return (np.vstack([rest, points]), np.concatenate([[brake_s], brake_s + rest_times]),
                np.vstack([np.zeros(self.num_joints), velocities]), tail, slowed)

    def _respect_limits(self, positions: np.ndarray, times: np.ndarray, start: StartState, moving_end: bool,
                        max_rounds: int = 100) -> tuple[np.ndarray, bool] | None:
        """Stretch segments until the controller's splines stay within the velocity and acceleration limits.

        The splines are the ones the JTC will run (`splines.hermite_peaks`): from the start state (each corner of its
        error box) through the points with monotone knot velocities, to rest at the last point or (moving_end) through
        it into a braking tail, which meets the limits by construction. Only time stretches; the path is kept.
        Returns None when no stretch does: the first segment would leave the position limits (stretching it only
        lets the arm coast further) or no timing is found within `max_rounds`.
        """
        steps = np.diff(np.concatenate([[0.0], times]))
        delta = positions - np.vstack([start.positions, positions[:-1]])
        stretched = np.maximum(steps, np.max(np.abs(delta) / self._dq_max, axis=1) * 1.001)
        q_lo, q_hi = self._allowed_range(start)
        for _ in range(max_rounds):
            at = np.cumsum(stretched)
            velocities = knot_velocities(start.positions, positions, at, moving_end)
            if not within_positions(start, positions, velocities, at, q_lo, q_hi):
                return None
            v_ratio, a_ratio = spline_ratios(start, positions, velocities, at, self._dq_max, self._ddq_max)
            ratio = np.maximum(v_ratio, np.sqrt(a_ratio))
            if np.all(ratio <= 1.0 + 1e-9):
                return at, bool((stretched > steps).any())
            bad = ratio > 1.0
            stretched[bad] *= np.minimum(ratio[bad], 2.0) * 1.001
        return None

    def _allowed_range(self, start: StartState) -> tuple[np.ndarray, np.ndarray]:
        """Position limits the motion must stay in.

        An arm already outside them may only come back: from where it is, give or take its error and the margin (the
        uncertain part of its velocity may carry it a little further before the command brings it back).
        """
        lo, hi = np.asarray(self.limits.q_min, float), np.asarray(self.limits.q_max, float)
        return outside_range(start, lo, hi, self.config.position_margin_rad)


def stop_travel(speed: np.ndarray, duration: float, room: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(travel, fits, deceleration) per joint of the cubic from `speed` to rest over `duration` that best uses `room`.

    A cubic from (0, v) to (d, 0) over T with d = delta v T: delta = 1/2 is constant deceleration v / T; down to 1/3 it
    stops short without reversing (start deceleration (4 - 6 delta) v / T); below 1/3 it passes d and comes back,
    furthest at s = 1 / (3 - 6 delta) of the way, E(delta) v T past the start (E(0) = 4/27: holding the position).
    Each joint takes the largest delta whose furthest point stays within `room`; `fits` is False where even 4/27 v T
    does not.
    """
    span = speed * duration
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(span > 0.0, room / span, np.inf)
    delta = np.where(ratio >= 0.5, 0.5, np.where(ratio >= 1.0 / 3.0, ratio, 0.0))
    overshoot = ratio < 1.0 / 3.0
    if overshoot.any():  # bisect E(delta) <= ratio on [0, 1/3); E rises from 4/27 to 1/3
        low, high = np.zeros_like(ratio), np.full_like(ratio, 1.0 / 3.0)
        for _ in range(40):
            mid = 0.5 * (low + high)
            ok = _excursion(mid) <= ratio
            low, high = np.where(ok, mid, low), np.where(ok, high, mid)
        delta = np.where(overshoot, low, delta)
    fits = _excursion(delta) <= ratio + 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        decel = np.where(span > 0.0, (4.0 - 6.0 * delta) * speed / duration, 0.0)
        decel = np.where(delta >= 0.5, speed / duration, decel)
    return delta * span, fits, decel


def _excursion(delta: np.ndarray) -> np.ndarray:
    """Furthest point, in units of v T, of the cubic from (0, v) to (delta v T, 0) over T (`stop_travel`)."""
    s = np.where(delta < 1.0 / 3.0, 1.0 / (3.0 - 6.0 * np.minimum(delta, 0.3333)), 1.0)
    inside = s - 2 * s ** 2 + s ** 3 + delta * (3 * s ** 2 - 2 * s ** 3)
    return np.where(delta < 1.0 / 3.0, inside, delta)


def _braking_time(v: np.ndarray, dv: np.ndarray, dq: np.ndarray, decel: np.ndarray) -> float:
    """Time to brake from v to rest at `decel` along a cubic to q + v T / 2, for every corner of the start's error box.

    From the estimate the deceleration is |v| / T; a start velocity dv off adds 4 dv / T and a start position dq off
    adds 6 dq / T^2 (the cubic's acceleration at its start), so T solves decel T^2 - (|v| + 4 dv) T - 6 dq = 0.
    """
    b = np.abs(v) + 4.0 * dv
    t = (b + np.sqrt(b * b + 24.0 * decel * dq)) / (2.0 * decel)
    return float(np.max(t))


def outside_range(start: StartState, q_min: np.ndarray, q_max: np.ndarray,
                  slack_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """The position limits, widened only for a joint that starts outside them: to its start and `slack_rad` beyond."""
    slack = start.position_error + slack_rad
    low, high = start.positions - start.position_error < q_min, start.positions + start.position_error > q_max
    return (np.where(low, start.positions - slack, q_min), np.where(high, start.positions + slack, q_max))


def _tiled(start: StartState, positions: np.ndarray, velocities: np.ndarray):
    """The corners side by side as extra joints: (q0, v0, positions, velocities), K corners x J joints wide."""
    corners = start.corners()
    k = len(corners)
    q0 = np.concatenate([c[0] for c in corners])
    v0 = np.concatenate([c[1] for c in corners])
    return q0, v0, np.tile(positions, (1, k)), np.tile(velocities, (1, k)), k


def within_positions(start: StartState, positions: np.ndarray, velocities: np.ndarray, times_s: np.ndarray,
                     q_min: np.ndarray, q_max: np.ndarray) -> bool:
    """Every cubic segment from every corner of the start stays within [q_min, q_max] (closed-form extremes)."""
    q0, v0, p, v, k = _tiled(start, positions, velocities)
    lo, hi = hermite_position_range(q0, v0, p, v, times_s)
    return not ((lo < np.tile(q_min, k) - 1e-9).any() or (hi > np.tile(q_max, k) + 1e-9).any())


def spline_ratios(start: StartState, positions: np.ndarray, velocities: np.ndarray, times_s: np.ndarray,
                  dq_max: np.ndarray, ddq_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) peak velocity / limit and (N,) peak acceleration / limit of each cubic segment, worst joint and corner.

    The first segment may keep the speed the arm already has (no command can change the present).
    """
    q0, v0, p, v, k = _tiled(start, positions, velocities)
    peak_v, peak_a = hermite_peaks(q0, v0, p, v, times_s)
    allowed_v = np.tile(np.asarray(dq_max, float), (len(times_s), k))
    allowed_v[0] = np.maximum(allowed_v[0], np.abs(v0))
    return np.max(peak_v / allowed_v, axis=1), np.max(peak_a / np.tile(np.asarray(ddq_max, float), k), axis=1)


def check_plan(plan: PlannedCommand, limits: JointLimits, start_slack_rad: float = 0.01) -> None:
    """The last line of defence before a command leaves the node: the controller's motion, not only the points.

    Cubic commands: each segment's closed-form extremes of position, velocity and acceleration, from every corner of
    the start's error box, the first segment included (it may keep, not exceed, the speed the arm already has).
    An arm that starts outside the position limits may only come back (`start_slack_rad` past where it is).
    Positions-only steps: the linear segment's speed from every start corner within the velocity limit, and its
    change from the set-point velocity before it within the acceleration limit x its duration.

    Raises:
        UnsafeChunk: non-finite values, non-increasing or non-positive times, a position outside the limits, a velocity
            or acceleration over them, or a nonzero final velocity.
    """
    arrays = [plan.times_s, plan.positions, plan.start] + ([] if plan.velocities is None else [plan.velocities])
    if not all(np.isfinite(a).all() for a in arrays):
        raise UnsafeChunk("planned command contains non-finite values")
    if plan.times_s[0] <= 0 or (np.diff(plan.times_s) <= 0).any():
        raise UnsafeChunk(f"time_from_start must be positive and strictly increase, got {plan.times_s.tolist()}")
    q_min, q_max = np.asarray(limits.q_min, float), np.asarray(limits.q_max, float)
    if (plan.positions < q_min).any() or (plan.positions > q_max).any():
        raise UnsafeChunk("planned positions leave the joint limits")
    start = plan.start_state
    dq_max, ddq_max = np.asarray(limits.dq_max, float), np.asarray(limits.ddq_max, float)
    if plan.velocities is None:
        speeds = [segment_speeds(q0, plan.positions, plan.times_s) for q0, _ in start.corners()]
        if any((np.abs(s) > dq_max * (1.0 + 1e-6)).any() for s in speeds):
            raise UnsafeChunk("a planned segment is faster than the velocity limits")
        reach = ddq_max * plan.times_s[0] * (1.0 + 1e-6)
        if any((np.abs(s[0] - start.velocities) > reach).any() for s in speeds):
            raise UnsafeChunk("a planned step changes the controller's velocity faster than the acceleration limits")
        return
    if (plan.velocities[-1] != 0.0).any():
        raise UnsafeChunk("planned velocities do not end at zero")
    lo, hi = outside_range(start, q_min, q_max, start_slack_rad)
    if not within_positions(start, plan.positions, plan.velocities, plan.times_s, lo - 1e-6, hi + 1e-6):
        raise UnsafeChunk("the controller's spline through the planned points leaves the joint limits")
    ratios = spline_ratios(start, plan.positions, plan.velocities, plan.times_s, dq_max, ddq_max)
    if any((r > 1.0 + 1e-6).any() for r in ratios):
        raise UnsafeChunk("the controller's spline through the planned points exceeds the velocity or "
                          "acceleration limits")
