"""The controller's side of the executor's commands: the motion ros2_controllers' JTC makes of them, sampled.

`FollowingArm` is an arm that follows the controller's set-point exactly; the controller is the simulator's model of
the JTC (`retain_ros.sim.controller`, written from ros2_controllers' source, independent of the planner's maths): each
command is anchored at the arm's true position and velocity when it arrives. Limits are asserted on its samples.
"""

from __future__ import annotations

import numpy as np

from retain_ros.control.chunk_executor import JointLimits, PlannedCommand
from retain_ros.evaluate.sim_rollout import plan_to_trajectory
from retain_ros.sim.controller import JointTrajectoryController
from retain_ros.topics import FR3_ARM_JOINTS


class FollowingArm:
    """An arm whose measured state is the controller's set-point; commands are anchored at it."""

    def __init__(self, q0: np.ndarray) -> None:
        self.jtc = JointTrajectoryController(FR3_ARM_JOINTS, np.full(7, -10.0), np.full(7, 10.0))  # never clips
        self.jtc.hold(np.asarray(q0, float))
        self.sent_at: float | None = None
        self.anchor_velocity = np.zeros(7)
        self._pushed: tuple[float, np.ndarray, np.ndarray] | None = None

    def push(self, t_s: float, q: np.ndarray, v: np.ndarray) -> None:
        """Put the arm into state (q, v) at `t_s` (a tracking error, a push): the next command is anchored there."""
        self._pushed = (t_s, np.asarray(q, float), np.asarray(v, float))

    def state(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(positions, velocities) of the arm at `t_s`."""
        if self._pushed is not None and self._pushed[0] == t_s:
            return self._pushed[1].copy(), self._pushed[2].copy()
        q, dq, _ = self.jtc.sample_many(np.array([t_s]))
        return q[0], dq[0]

    def send(self, plan: PlannedCommand, t_s: float) -> None:
        """The controller receives `plan` at `t_s` and anchors it at the arm's state then."""
        q, v = self.state(t_s)
        self.jtc.command(plan_to_trajectory(plan, FR3_ARM_JOINTS), t_s, q, v)
        self.sent_at, self.anchor_velocity, self._pushed = t_s, v, None

    def motion(self, t_end_s: float, samples: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, velocities, accelerations) from the last command's arrival to `t_end_s`."""
        return self.jtc.sample_many(np.linspace(self.sent_at, t_end_s, samples))


def violations(arm: FollowingArm, t_end_s: float, limits: JointLimits, linear: bool = False,
               before: np.ndarray | None = None, samples: int = 400) -> list[str]:
    """What the controller's motion since the last command breaks, up to `t_end_s` (empty: nothing).

    Velocity may keep the speed the arm had when the command arrived (no command can change the present); a
    positions-only step's velocity jump from the set-point `before` it is its acceleration over its duration.
    """
    q, dq, ddq = arm.motion(t_end_s, samples)
    out = []
    q_min, q_max = np.asarray(limits.q_min), np.asarray(limits.q_max)
    if (q < q_min - 1e-9).any() or (q > q_max + 1e-9).any():
        worst = float(np.max(np.maximum(q_min - q, q - q_max)))
        out.append(f"position {worst * 1e3:.2f} mrad past a limit")
    allowed_v = np.maximum(np.asarray(limits.dq_max), np.abs(arm.anchor_velocity)) * (1 + 1e-6) + 1e-9
    if (np.abs(dq) > allowed_v).any():
        out.append(f"velocity {float(np.max(np.abs(dq) / allowed_v)):.3f} x its limit")
    ddq_max = np.asarray(limits.ddq_max)
    if linear:  # one line from the anchor: its velocity is the step's, at once
        step_s = arm.jtc.end_time_s - arm.sent_at
        jump = np.abs(dq[0] - (np.zeros(7) if before is None else before))
        if (jump > ddq_max * step_s * (1 + 1e-6) + 1e-9).any():
            out.append(f"velocity jump {float(np.max(jump)):.3f} rad/s over a {step_s:.3f} s step")
    elif (np.abs(ddq) > ddq_max * (1 + 1e-6) + 1e-9).any():
        out.append(f"acceleration {float(np.max(np.abs(ddq) / ddq_max)):.3f} x its limit")
    return out
