"""franka_gripper goals and controller_manager answers, built from the upstream definitions with rosbags' typestore.

franka_msgs and controller_manager_msgs are not on PyPI (test/data/interfaces/ keeps their field lines), so the node's
logic is checked against messages of exactly those fields instead of a ROS install.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from retain_ros.control.controller_state import UNKNOWN, status_from_list
from retain_ros.control.gripper_commands import GripperCommander, GripperSettings, fill

DEFINITIONS = Path(__file__).resolve().parents[1] / "data" / "interfaces"


@pytest.fixture(scope="module")
def types():
    store = get_typestore(Stores.ROS2_JAZZY)
    for path in sorted(DEFINITIONS.glob("*.msg")):
        package, name = path.stem.split("_msgs_")
        store.register(get_types_from_msg(path.read_text(), f"{package}_msgs/msg/{name}"))
    return store.types


def test_the_gripper_is_commanded_on_changes_only_and_never_twice_at_once():
    commander = GripperCommander(GripperSettings(open_width_m=0.08, speed_m_s=0.1, force_n=20.0))
    commander.want(0.1)  # 0 open .. 1 closed: open
    first = commander.next_goal(0.0)
    assert first.action == "move" and first.fields == {"width": 0.08, "speed": 0.1}
    commander.want(0.2)
    assert commander.next_goal(0.1) is None  # still open, and a goal runs
    commander.want(0.9)
    assert commander.next_goal(0.2) is None  # closed wanted while the move runs: held, not sent beside it
    commander.want(0.95)
    commander.finished(True, 0.5)
    grasp = commander.next_goal(0.5)  # the move ended: the latest wish goes out
    assert grasp.action == "grasp" and grasp.fields["force"] == 20.0 and grasp.fields["width"] == 0.0
    assert grasp.fields["epsilon"] == {"inner": 0.005, "outer": 0.08}  # any object up to fully open is a success
    commander.finished(True, 1.0)
    assert commander.next_goal(1.0) is None  # closed and nothing else wanted
    commander.want(0.8)
    commander.want(0.6)
    assert commander.next_goal(1.1) is None  # still closed: nothing sent
    commander.want(0.3)
    assert commander.next_goal(1.2).action == "move"


def test_a_wish_made_before_the_node_stopped_commanding_never_moves_the_gripper():
    """Review finding: a held 'open' used to go out when the running grasp ended, after ~/pause."""
    commander = GripperCommander()
    commander.want(1.0)
    assert commander.next_goal(0.0).action == "grasp"
    commander.want(0.0)  # open wanted while the grasp runs ...
    commander.hold()  # ... and then the node stops commanding (pause, deactivate, stale stream)
    commander.finished(True, 0.5)
    assert commander.next_goal(0.6) is None


def test_failed_refused_or_silent_goals_are_retried_later_not_at_once():
    commander = GripperCommander(timeout_s=10.0, retry_s=1.0)
    commander.want(1.0)
    assert commander.next_goal(0.0).action == "grasp"
    commander.finished(False, 0.2, "franka_gripper refused the goal")
    assert commander.next_goal(0.5) is None and "refused" in commander.problem  # no storm of goals
    assert commander.next_goal(1.3).action == "grasp"
    assert commander.next_goal(5.0) is None  # it runs
    assert commander.next_goal(11.4).action == "grasp" and "no result" in commander.problem  # given up, sent again
    commander.lost(12.0, "gripper action /franka_gripper/grasp is not available")
    assert commander.next_goal(12.5) is None and commander.next_goal(13.1).action == "grasp"


def test_openpi_threshold_half_is_closed_above_only():
    commander = GripperCommander()
    commander.want(0.5)
    assert commander.next_goal(0.0).action == "move"
    commander.finished(True, 0.1)
    commander.want(0.51)
    assert commander.next_goal(0.2).action == "grasp"


def test_goals_fill_the_franka_msgs_fields(types):
    epsilon_type = types["franka_msgs/msg/GraspEpsilon"]
    grasp = types["franka_msgs/msg/Grasp_Goal"](width=1.0, epsilon=epsilon_type(inner=0.005, outer=0.005), speed=0.0,
                                                force=0.0)
    commander = GripperCommander()
    fill(grasp, commander.goal("closed").fields)
    assert (grasp.width, grasp.speed, grasp.force) == (0.0, 0.1, 20.0)
    assert (grasp.epsilon.inner, grasp.epsilon.outer) == (0.005, 0.08)
    move = fill(types["franka_msgs/msg/Move_Goal"](width=0.0, speed=0.0), commander.goal("open").fields)
    assert (move.width, move.speed) == (0.08, 0.1)
    with pytest.raises(AttributeError, match="no field 'force'"):
        fill(types["franka_msgs/msg/Move_Goal"](width=0.0, speed=0.0), {"force": 1.0})


def controllers(types, **states):
    state_type = types["controller_manager_msgs/msg/ControllerState"]
    items = [state_type(name=name, state=state, type="joint_trajectory_controller/JointTrajectoryController",
                        is_async=False, update_rate=1000, claimed_interfaces=[], required_command_interfaces=[],
                        required_state_interfaces=[], is_chainable=False, is_chained=False,
                        exported_state_interfaces=[], reference_interfaces=[], chain_connections=[])
             for name, state in states.items()]
    return types["controller_manager_msgs/msg/ListControllers_Response"](controller=items)


def test_an_inactive_or_missing_controller_blocks_commands_with_the_fix(types):
    active = status_from_list(controllers(types, fr3_arm_controller="active", joint_state_broadcaster="active"),
                              "fr3_arm_controller")
    assert active.known and active.active and not active.blocks_commands and active.detail == ""
    inactive = status_from_list(controllers(types, fr3_arm_controller="inactive"), "fr3_arm_controller")
    assert inactive.blocks_commands and "inactive" in inactive.detail and "set_controller_state" in inactive.detail
    missing = status_from_list(controllers(types, joint_state_broadcaster="active"), "fr3_arm_controller")
    assert missing.blocks_commands and "not loaded" in missing.detail and "joint_state_broadcaster" in missing.detail
    assert not UNKNOWN.blocks_commands  # no controller_manager to ask: commanding is not held back
