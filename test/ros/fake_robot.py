"""A constant robot in the test process: fixed camera frames, joint and gripper states, republished at a rate.

Constant inputs make the policy's output a function of its weights alone, so a test can tell which merge computed a
chunk. Streams can be switched off one by one (a camera that drops out) or replaced with bad messages.
"""

from __future__ import annotations

import numpy as np
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from retain_ros.ros import conversions as conv
from retain_ros.topics import FR3_ARM_JOINTS, FR3_FINGER_JOINTS, Topics

HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
FINGERS = np.array([0.03, 0.03])
INSTRUCTION = "pick up the red cube"


def frames(size: int = 24) -> dict[str, np.ndarray]:
    """The fixed camera images."""
    rng = np.random.default_rng(5)
    return {cam: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for cam in ("exterior", "wrist")}


class FakeRobot:
    """Publishes the fixed streams from a timer of the observer node."""

    def __init__(self, node, rate_hz: float = 30.0, encoding: str = "rgb8", latched_instruction: bool = True) -> None:
        t = Topics()
        self.node = node
        self.images = frames()
        self.encoding = encoding
        self.wrong_encoding: str | None = None  # stamped on the exterior frames (the data stays rgb8)
        self.enabled = {"exterior": True, "wrist": True, "joints": True, "gripper": True}
        self.joint_names = list(FR3_ARM_JOINTS)
        self.q = HOME_Q.copy()
        self.cams = {c: node.create_publisher(Image, getattr(t, f"{c}_image"), qos_profile_sensor_data)
                     for c in self.images}
        self.joints = node.create_publisher(JointState, t.joint_states, qos_profile_sensor_data)
        self.gripper = node.create_publisher(JointState, t.gripper_states, qos_profile_sensor_data)
        if latched_instruction:  # published once, latched (what a launch file or a script does)
            latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
            self.instruction = node.create_publisher(String, t.instruction, latched)
            self.instruction.publish(String(data=INSTRUCTION))
        else:  # volatile and repeated at 1 Hz, as a plain `ros2 topic pub /instruction std_msgs/msg/String ...`
            self.instruction = node.create_publisher(String, t.instruction, 10)
            self.instruction_timer = node.create_timer(
                1.0, lambda: self.instruction.publish(String(data=INSTRUCTION)))
        self.timer = node.create_timer(1.0 / rate_hz, self.publish)

    def publish(self) -> None:
        now = self.node.get_clock().now().nanoseconds
        for cam, pub in self.cams.items():
            if self.enabled[cam]:
                msg = conv.rgb_to_image(self.images[cam], self.encoding, now, f"{cam}_camera")
                if cam == "exterior" and self.wrong_encoding:
                    msg.encoding = self.wrong_encoding
                pub.publish(msg)
        if self.enabled["joints"]:
            # extra joints and a shuffled order: the node must map by name
            names = ["extra_joint", *reversed(self.joint_names)]
            values = [42.0, *reversed(self.q.tolist())]
            self.joints.publish(conv.joint_state(names, values, stamp_ns=now))
        if self.enabled["gripper"]:
            self.gripper.publish(conv.joint_state(FR3_FINGER_JOINTS, FINGERS, stamp_ns=now))
