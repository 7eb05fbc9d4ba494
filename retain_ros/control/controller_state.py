"""Whether the controller the node commands is active, from controller_manager's `~/list_controllers` answer.

ros2_controllers' joint_trajectory_controller drops a valid trajectory silently while it is inactive (its topic
callback adds it only when the subscriber is active), so a node that keeps publishing would look as if it commanded.
The node asks controller_manager where its service exists (controller_manager_msgs is part of a ROS install, not of
PyPI) and does not command while the answer says the controller is not active. Plain logic here; it reads only the
fields `controller[].name` and `.state`, the same in Humble and Jazzy (controller_manager_msgs/msg/ControllerState).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ControllerStatus:
    """What is known about the commanded controller.

    Attributes:
        known: controller_manager answered (False: no service, not installed, or no answer yet).
        active: the controller is loaded and active (meaningful when known).
        detail: a sentence for ~/status ('' when active).
    """

    known: bool
    active: bool
    detail: str

    @property
    def blocks_commands(self) -> bool:
        """Commands would be dropped: controller_manager says the controller is not active."""
        return self.known and not self.active


UNKNOWN = ControllerStatus(False, False, "not checked")


def status_from_list(response, controller: str) -> ControllerStatus:
    """The status of `controller` in a ListControllers response (rclpy or rosbags message alike)."""
    states = {c.name: c.state for c in response.controller}
    if controller not in states:
        loaded = ", ".join(sorted(states)) or "none"
        return ControllerStatus(True, False, f"controller '{controller}' is not loaded in controller_manager (loaded: "
                                             f"{loaded}); load and activate it, e.g. `ros2 control load_controller "
                                             f"--set-state active {controller}`, or set the controller_name parameter")
    state = states[controller]
    if state != "active":
        return ControllerStatus(True, False, f"controller '{controller}' is {state}, not active: it would drop every "
                                             f"trajectory; `ros2 control set_controller_state {controller} active`")
    return ControllerStatus(True, True, "")
