"""What to send to a franka_gripper, decided without ROS: open/close changes only, close = grasp, one goal at a time.

franka_ros2's gripper node (`franka_gripper`, actions `~/move` and `~/grasp`, franka_msgs) accepts every goal and runs
each in its own thread: a new goal does not preempt a running one (franka_gripper/src/gripper_action_server.cpp), and
a move applies no force, so closing on an object is a grasp. A policy outputs a gripper position at every action, so
the node binarises it (openpi's DROID client: closed above 0.5), sends a goal only when the wanted state changes, and
holds a change that arrives while a goal runs until that goal ends (the latest wish wins); a wish made while the node
commanded is dropped when it stops commanding. docs/robot.md cites the sources.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GripperSettings:
    """How the gripper is commanded.

    Attributes:
        open_width_m: width of an open gripper (m; franka_description: 0.04 per finger).
        speed_m_s: finger speed of moves and grasps (m/s; franka_gripper's default 0.1).
        force_n: grasp force (N).
        epsilon_inner_m: a grasp succeeds down to this far below the commanded width (m).
        epsilon_outer_m: a grasp succeeds up to this far above it (m): the open width accepts an object of any size.
        threshold: gripper positions above it mean closed (0 open .. 1 closed; DROID / openpi: 0.5).
    """

    open_width_m: float = 0.08
    speed_m_s: float = 0.1
    force_n: float = 20.0
    epsilon_inner_m: float = 0.005
    epsilon_outer_m: float = 0.08
    threshold: float = 0.5


@dataclass(frozen=True)
class GripperGoal:
    """One franka_gripper goal: 'move' (open) or 'grasp' (close), with the fields of franka_msgs' Move / Grasp goals.

    Attributes:
        action: 'move' or 'grasp' (the action name under the gripper node).
        fields: goal fields by name (Move: width, speed; Grasp: width, speed, force, epsilon {inner, outer}).
    """

    action: str
    fields: dict


class GripperCommander:
    """Turns the policy's gripper positions into franka_gripper goals; never two goals at once.

    The control thread records what the policy wants (`want`); the node's executor thread asks for the goal to send
    (`next_goal`) only while it commands, so nothing moves the gripper while paused or inactive (`hold` forgets a wish
    made before). Results come back through `finished`; a goal without a result for `timeout_s` is given up.
    """

    def __init__(self, settings: GripperSettings = GripperSettings(), timeout_s: float = 10.0,
                 retry_s: float = 1.0) -> None:
        self.settings = settings
        self.timeout_s, self.retry_s = timeout_s, retry_s
        self.commanded: str | None = None  # 'open' / 'closed' of the last goal sent
        self.busy = False
        self.problem = ""  # the last goal that failed or timed out (for ~/status)
        self._wanted: str | None = None
        self._sent_at = 0.0
        self._retry_at = 0.0

    def goal(self, state: str) -> GripperGoal:
        """The goal that brings the gripper to `state` ('open' or 'closed')."""
        s = self.settings
        if state == "open":
            return GripperGoal("move", {"width": s.open_width_m, "speed": s.speed_m_s})
        return GripperGoal("grasp", {"width": 0.0, "speed": s.speed_m_s, "force": s.force_n,
                                     "epsilon": {"inner": s.epsilon_inner_m, "outer": s.epsilon_outer_m}})

    def want(self, position: float) -> None:
        """The policy's gripper position (0 open .. 1 closed) of the action being executed."""
        self._wanted = "closed" if position > self.settings.threshold else "open"

    def hold(self) -> None:
        """Forget what the policy wanted: commanding stopped, so no held wish may move the gripper later."""
        self._wanted = None

    def next_goal(self, now_s: float) -> GripperGoal | None:
        """The goal to send now, if any: the policy's wish differs from the last goal, and none runs."""
        if self.busy and now_s - self._sent_at > self.timeout_s:
            self.busy, self.commanded = False, None
            self.problem = f"no result for the last gripper goal after {self.timeout_s:.0f} s; given up"
        if self.busy or now_s < self._retry_at or self._wanted is None or self._wanted == self.commanded:
            return None
        self.commanded, self.busy, self._sent_at = self._wanted, True, now_s
        return self.goal(self.commanded)

    def finished(self, succeeded: bool, now_s: float, why: str = "") -> None:
        """The running goal ended; a failed or refused one is tried again after `retry_s`."""
        self.busy = False
        if not succeeded:
            self.commanded, self._retry_at = None, now_s + self.retry_s
            self.problem = why or "the gripper goal failed"

    def lost(self, now_s: float, why: str) -> None:
        """The goal could not be sent (no action server): nothing runs; tried again after `retry_s`."""
        self.finished(False, now_s, why)


def fill(message, fields: dict):
    """Set `fields` (nested dicts for nested messages) on a ROS message object by name; returns the message.

    Raises:
        AttributeError: the message has no such field (a franka_msgs version whose goal differs).
    """
    for name, value in fields.items():
        if not hasattr(message, name):
            raise AttributeError(f"{type(message).__name__} has no field '{name}'")
        if isinstance(value, dict):
            fill(getattr(message, name), value)
        else:
            setattr(message, name, value)
    return message
