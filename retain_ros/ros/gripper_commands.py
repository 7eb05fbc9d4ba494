"""What to send to a franka_gripper, decided without ROS: open/close changes only, close = grasp, one goal at a time.

franka_ros2's gripper node (`franka_gripper`, actions `~/move` and `~/grasp`, franka_msgs) accepts every goal and runs
each in its own thread: a new goal does not preempt a running one (franka_gripper/src/gripper_action_server.cpp), and
a move applies no force, so closing on an object is a grasp. A policy outputs a gripper position at every action, so
the node binarises it (openpi's DROID client: closed above 0.5), sends a goal only when the wanted state changes, and
holds a change that arrives while a goal runs until that goal ends (the latest wish wins). docs/robot.md cites the
sources.
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
    """Turns the policy's gripper positions into franka_gripper goals; never two goals at once."""

    def __init__(self, settings: GripperSettings = GripperSettings()) -> None:
        self.settings = settings
        self.commanded: str | None = None  # 'open' / 'closed' of the last goal sent
        self.busy = False
        self._wanted: str | None = None

    def goal(self, state: str) -> GripperGoal:
        """The goal that brings the gripper to `state` ('open' or 'closed')."""
        s = self.settings
        if state == "open":
            return GripperGoal("move", {"width": s.open_width_m, "speed": s.speed_m_s})
        return GripperGoal("grasp", {"width": 0.0, "speed": s.speed_m_s, "force": s.force_n,
                                     "epsilon": {"inner": s.epsilon_inner_m, "outer": s.epsilon_outer_m}})

    def update(self, position: float) -> GripperGoal | None:
        """A new gripper position from the policy; returns the goal to send now, if any."""
        self._wanted = "closed" if position > self.settings.threshold else "open"
        return self._next()

    def finished(self) -> GripperGoal | None:
        """The running goal ended (succeeded, failed or was rejected); returns the goal to send now, if any."""
        self.busy = False
        return self._next()

    def lost(self) -> None:
        """The goal could not be sent (no action server): nothing runs, and the next update tries again."""
        self.commanded, self.busy = None, False

    def _next(self) -> GripperGoal | None:
        if self.busy or self._wanted is None or self._wanted == self.commanded:
            return None
        self.commanded, self.busy = self._wanted, True
        return self.goal(self.commanded)


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
