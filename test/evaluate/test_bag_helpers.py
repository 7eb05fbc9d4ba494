"""Bags written with rosbags using standard ROS 2 types, as `ros2 bag record` makes them on an FR3 (test helpers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_JAZZY)
START_NS = 1_700_000_000 * 10**9
RATE_HZ = 15.0
ARM = tuple(f"fr3_joint{i}" for i in range(1, 8))
FINGERS = ("fr3_finger_joint1", "fr3_finger_joint2")
IMAGE_HW = (12, 20)


def _header(stamp_ns: int, frame_id: str = ""):
    sec, nanosec = divmod(int(stamp_ns), 10**9)
    return TS.types["std_msgs/msg/Header"](stamp=TS.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                           frame_id=frame_id)


def std_messages(k: int, stamp_ns: int, rgb: dict, q: np.ndarray, fingers: np.ndarray, action: np.ndarray,
                 joint_names: tuple[str, ...] = ARM) -> list[tuple[str, str, object]]:
    """One step of a robot-like recording with standard types (what `ros2 bag record` stores on an FR3)."""
    types = TS.types
    h, w = IMAGE_HW
    bgr = rgb["exterior"][:, :, ::-1].reshape(-1)
    padded = np.zeros((h, w * 3 + 4), np.uint8)  # rgb8 with row padding (step > width * 3)
    padded[:, :w * 3] = rgb["wrist"].reshape(h, w * 3)
    order = [3, 0, 6, 1, 5, 2, 4]  # joint order of the driver differs from the policy's
    names = [joint_names[i] for i in order] + ["extra_joint"]
    out = [
        ("/cameras/exterior/image_raw", "sensor_msgs/msg/Image", types["sensor_msgs/msg/Image"](
            header=_header(stamp_ns, "exterior_camera"), height=h, width=w, encoding="bgr8", is_bigendian=0,
            step=w * 3, data=np.ascontiguousarray(bgr))),
        ("/cameras/wrist/image_raw", "sensor_msgs/msg/Image", types["sensor_msgs/msg/Image"](
            header=_header(stamp_ns, "wrist_camera"), height=h, width=w, encoding="rgb8", is_bigendian=0,
            step=w * 3 + 4, data=padded.reshape(-1))),
        ("/franka/joint_states", "sensor_msgs/msg/JointState", types["sensor_msgs/msg/JointState"](
            header=_header(stamp_ns), name=names, position=np.array([*q[order], 9.0]),
            velocity=np.zeros(8), effort=np.zeros(0))),
        ("/franka_gripper/joint_states", "sensor_msgs/msg/JointState", types["sensor_msgs/msg/JointState"](
            header=_header(stamp_ns), name=list(FINGERS), position=fingers, velocity=np.zeros(2),
            effort=np.zeros(0))),
        ("/action", "std_msgs/msg/Float64MultiArray", types["std_msgs/msg/Float64MultiArray"](
            layout=types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=action)),
    ]
    sec, nanosec = divmod(int(round(1e9 / RATE_HZ)), 10**9)
    point = types["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=q + action[:7] / RATE_HZ, velocities=np.zeros(0), accelerations=np.zeros(0), effort=np.zeros(0),
        time_from_start=types["builtin_interfaces/msg/Duration"](sec=sec, nanosec=nanosec))
    out.append(("/fr3_arm_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory",
                types["trajectory_msgs/msg/JointTrajectory"](header=_header(stamp_ns), joint_names=list(joint_names),
                                                             points=[point])))
    out.append(("/franka_gripper/width_command", "std_msgs/msg/Float64",
                types["std_msgs/msg/Float64"](data=float(0.08 * (1 - action[7])))))
    if k == 0:
        out.insert(0, ("/instruction", "std_msgs/msg/String", types["std_msgs/msg/String"](data="pick up the cube")))
    return out


def write_std_bag(path: Path, storage: str = "sqlite3", steps: int = 8, drop: tuple[str, ...] = (),
                  joint_names: tuple[str, ...] = ARM, constant: bool = False, seed: int = 0) -> Path:
    """A bag of `steps` control steps at 15 Hz with cameras, joints, fingers, instruction, actions and commands.

    Args:
        path: bag directory to create.
        storage: 'sqlite3' or 'mcap'.
        steps: control steps.
        drop: topics left out.
        joint_names: arm joint names in the messages.
        constant: every step repeats the first one's content (only the stamps advance).
        seed: content seed.
    """
    rng = np.random.default_rng(seed)
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    q = rng.uniform(-0.5, 0.5, 7)
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for k in range(steps):
            if k == 0 or not constant:
                rgb = {c: rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8) for c in ("exterior", "wrist")}
                action = np.concatenate([rng.uniform(-0.5, 0.5, 7), [float(k >= steps // 2)]])
                fingers = np.full(2, 0.04 * (1 - action[7]))
            stamp = START_NS + int(round(k * 1e9 / RATE_HZ))
            for topic, msgtype, msg in std_messages(k, stamp, rgb, q, fingers, action, joint_names):
                if topic in drop:
                    continue
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
                writer.write(conns[topic], stamp, TS.serialize_cdr(msg, msgtype))
            if not constant:
                q = q + action[:7] / RATE_HZ
    return path
