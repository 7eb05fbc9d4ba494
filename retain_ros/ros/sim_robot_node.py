"""`sim_robot_node` (node name `sim_robot`): the MuJoCo FR3 tabletop behind the topics a real FR3 set-up offers.

Publishes (names from `retain_ros.topics.Topics`): both cameras (sensor_msgs/Image in `image_encoding`, or
CompressedImage for jpeg/png) at `camera_rate_hz`, /franka/joint_states and the finger joint states every tick, the task
instruction (latched), `~/episode` (std_msgs/String JSON: task, seed, reward, success) and, with `publish_clock`,
/clock in simulated time (run the policy node with use_sim_time:=true then).
Consumes the JointTrajectory command topic with the joint_trajectory_controller's semantics and the gripper width
command (std_msgs/Float64, metres).
Services: `~/reset` (std_srvs/Trigger) starts the episode given by the `task`, `variation`, `seed` parameters (set them
first, e.g. with `ros2 param set`); `~/success` (Trigger) answers success and the episode JSON.
"""

from __future__ import annotations

import json
import sys
import traceback

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from retain_ros.errors import ConfigError
from retain_ros.control import messages
from retain_ros.ros import conversions as conv
from retain_ros.ros.lifecycle import ManagedNode, spin_managed
from retain_ros.sim.robot import SimRobot, SimRobotConfig
from retain_ros.topics import FR3_ARM_JOINTS, FR3_FINGER_JOINTS, Topics

NODE_NAME = "sim_robot"
_T = Topics()
PARAMS = (  # name, default, description, read_only
    ("task", "pick_red", "task of the next ~/reset (retain-sim list)", False),
    ("variation", "id", "variation of the next ~/reset: id, position, distractors, appearance, viewpoint", False),
    ("seed", 0, "episode seed of the next ~/reset", False),
    ("sim_rate_hz", 60.0, "physics ticks per second; joint states are published every tick", True),
    ("camera_rate_hz", 15.0, "camera frames per second", True),
    ("image_size", 128, "square camera image side (pixels)", True),
    ("image_encoding", "rgb8", "rgb8, bgr8, rgba8, bgra8, mono8 (sensor_msgs/Image) or jpeg, png (CompressedImage)",
     True),
    ("publish_cameras", True, "false stops the cameras (to test a camera that drops out)", False),
    ("publish_clock", False, "publish /clock in simulated time", True),
    ("exterior_image_topic", _T.exterior_image, "exterior camera topic", True),
    ("wrist_image_topic", _T.wrist_image, "wrist camera topic", True),
    ("joint_states_topic", _T.joint_states, "arm joint states topic", True),
    ("gripper_states_topic", _T.gripper_states, "finger joint states topic", True),
    ("instruction_topic", _T.instruction, "instruction topic (latched)", True),
    ("command_topic", _T.arm_command, "JointTrajectory command topic", True),
    ("gripper_command_topic", _T.gripper_command, "gripper width command (m)", True),
)


class SimRobotNode(ManagedNode):
    """The simulated robot; see the module docstring."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, default, description, read_only in PARAMS:
            self.declare_parameter(name, default, ParameterDescriptor(description=description, read_only=read_only))
        self.robot: SimRobot | None = None
        self._entities: list = []
        self._timer = None

    def p(self, name: str):
        """Current value of a parameter."""
        return self.get_parameter(name).value

    def _setup(self) -> None:
        encoding = self.p("image_encoding")
        if encoding not in (*messages.ENCODINGS, "jpeg", "png"):
            raise ConfigError(f"image_encoding '{encoding}' is unknown; use one of "
                              f"{', '.join(messages.ENCODINGS)}, jpeg, png")
        config = SimRobotConfig(self.p("sim_rate_hz"), self.p("camera_rate_hz"), self.p("image_size"))
        self.robot = SimRobot(config, self.p("task"), self.p("variation"), self.p("seed"))
        image_type = CompressedImage if encoding in ("jpeg", "png") else Image
        self.camera_pubs = {cam: self.create_publisher(image_type, self.p(f"{cam}_image_topic"),
                                                       qos_profile_sensor_data) for cam in ("exterior", "wrist")}
        # reliable, as joint_state_broadcaster publishes (the policy node's best-effort subscription matches it)
        self.joint_pub = self.create_publisher(JointState, self.p("joint_states_topic"), 10)
        self.finger_pub = self.create_publisher(JointState, self.p("gripper_states_topic"), 10)
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.instruction_pub = self.create_publisher(String, self.p("instruction_topic"), latched)
        self.episode_pub = self.create_publisher(String, "~/episode", 10)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.p("publish_clock") else None
        self._entities += [self.create_subscription(JointTrajectory, self.p("command_topic"), self._on_trajectory, 10),
                           self.create_subscription(Float64, self.p("gripper_command_topic"), self._on_gripper, 10),
                           self.create_service(Trigger, "~/reset", self._srv_reset),
                           self.create_service(Trigger, "~/success", self._srv_success)]

    def _activate(self) -> None:
        self.instruction_pub.publish(String(data=self.robot.instruction))
        self._timer = self.create_timer(self.robot.tick_s, self._tick)

    def _deactivate(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def _teardown(self) -> None:
        self._deactivate()
        for entity in self._entities:
            kind = "subscription" if hasattr(entity, "msg_type") else "service"
            getattr(self, f"destroy_{kind}")(entity)
        self._entities = []
        if self.robot is not None:
            self.robot.close()
            self.robot = None

    # ------------------------------------------------------------------------------------------------ ticking
    def _tick(self) -> None:
        robot = self.robot
        try:
            cameras_due = robot.tick()
        except Exception as exc:  # noqa: BLE001  (keep the node alive; the next reset recovers)
            self.get_logger().error(f"physics step failed: {exc}\n{traceback.format_exc()}", throttle_duration_sec=5)
            return
        stamp = robot.time_ns if self.clock_pub is not None else self.get_clock().now().nanoseconds
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=conv.ns_to_stamp(stamp)))
        q, dq, tau = robot.joint_state()
        self.joint_pub.publish(conv.joint_state(FR3_ARM_JOINTS, q, dq, tau, stamp))
        fingers, finger_v = robot.finger_state()
        self.finger_pub.publish(conv.joint_state(FR3_FINGER_JOINTS, fingers, finger_v, stamp_ns=stamp))
        if cameras_due and self.p("publish_cameras"):
            self._publish_cameras(stamp)
        if robot.ticks % max(1, round(robot.config.sim_rate_hz / 2)) == 0:
            self.episode_pub.publish(String(data=json.dumps(robot.episode())))

    def _publish_cameras(self, stamp: int) -> None:
        encoding = self.p("image_encoding")
        for cam, pub in self.camera_pubs.items():
            rgb = self.robot.env.render(cam)
            if encoding in ("jpeg", "png"):
                msg = conv.rgb_to_compressed(rgb, encoding, stamp)
                msg.header.frame_id = f"{cam}_camera"
            else:
                msg = conv.rgb_to_image(rgb, encoding, stamp, f"{cam}_camera")
            pub.publish(msg)

    # ------------------------------------------------------------------------------------------------ commands
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            times, positions, velocities = messages.trajectory_arrays(msg, list(msg.joint_names))
        except messages.ConversionError as exc:
            self.get_logger().warning(f"trajectory rejected: {exc}")
            return
        stamp_ns = messages.stamp_to_ns(msg.header.stamp)
        start_in = None if stamp_ns == 0 else (stamp_ns - self._now_ns()) * 1e-9
        why = self.robot.command_trajectory(list(msg.joint_names), times, positions, velocities, start_in)
        if why is not None:
            self.get_logger().warning(f"trajectory rejected by the controller: {why}", throttle_duration_sec=2.0)

    def _now_ns(self) -> int:
        return self.robot.time_ns if self.clock_pub is not None else self.get_clock().now().nanoseconds

    def _on_gripper(self, msg: Float64) -> None:
        self.robot.command_gripper_width(msg.data)

    def _srv_reset(self, request, response):
        try:
            self.robot.reset(self.p("task"), self.p("variation"), self.p("seed"))
        except ValueError as exc:
            response.success, response.message = False, str(exc)
            return response
        self.instruction_pub.publish(String(data=self.robot.instruction))
        response.success, response.message = True, json.dumps(self.robot.episode())
        return response

    def _srv_success(self, request, response):
        episode = self.robot.episode()
        response.success, response.message = episode["success"], json.dumps(episode)
        return response


def main(args: list[str] | None = None) -> int:
    """Run the simulated robot (`ros2 run retain_ros sim_robot_node --ros-args -p task:=pick_red`)."""
    return spin_managed(SimRobotNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
