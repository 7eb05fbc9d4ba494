"""Default topic names and message types shared by the node, the simulated robot, recording and bag replay.

One vocabulary, defined once: the parameter file (config/fr3_droid.yaml) repeats these defaults for ROS users, and
bags recorded by the simulator use exactly these names so they replay into the node unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Topic names of one robot set-up (absolute names; the node remaps nothing by itself)."""

    exterior_image: str = "/cameras/exterior/image_raw"
    wrist_image: str = "/cameras/wrist/image_raw"
    joint_states: str = "/franka/joint_states"
    gripper_states: str = "/franka_gripper/joint_states"  # franka_ros2's gripper node
    instruction: str = "/instruction"
    arm_command: str = "/fr3_arm_controller/joint_trajectory"
    gripper_command: str = "/franka_gripper/width_command"  # the simulator's stand-in for its actions
    droid_action: str = "/action"


# rosbag2 / rclpy type names of each stream.
MSG_TYPES = {
    "exterior_image": "sensor_msgs/msg/Image",
    "wrist_image": "sensor_msgs/msg/Image",
    "joint_states": "sensor_msgs/msg/JointState",
    "gripper_states": "sensor_msgs/msg/JointState",
    "instruction": "std_msgs/msg/String",
    "arm_command": "trajectory_msgs/msg/JointTrajectory",
    "gripper_command": "std_msgs/msg/Float64",
    "droid_action": "std_msgs/msg/Float64MultiArray",
}

FR3_ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
FR3_FINGER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")
