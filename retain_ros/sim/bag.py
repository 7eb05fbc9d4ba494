"""Episodes as rosbag2 files, written with the pure-Python `rosbags` library (no ROS install needed).

Topic names and message types come from `retain_ros.topics` (the live node uses the same), so a recorded bag replays
into the node unchanged and opens in `ros2 bag info` / `ros2 bag play` on a robot PC (rosbag2 metadata version 9).

Per control step k, all stamped at start_ns + k / rate (header stamps = log times):
    exterior / wrist image    sensor_msgs/Image rgb8, frame ids `exterior_camera` / `wrist_camera`
    joint_states              sensor_msgs/JointState of fr3_joint1..7 (position, velocity, effort)
    gripper_states            sensor_msgs/JointState of the two finger joints
    droid_action              std_msgs/Float64MultiArray, 8 values
    arm_command               trajectory_msgs/JointTrajectory, one point after one period, header stamp 0 (= now)
    gripper_command           std_msgs/Float64, width in metres
and the instruction (std_msgs/String) at the first step and then once per second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from retain_ros.bag_types import typestore
from retain_ros.errors import ConfigError
from retain_ros.sim.episode import Episode
from retain_ros.topics import FR3_ARM_JOINTS, FR3_FINGER_JOINTS, MSG_TYPES, Topics

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
START_NS = 1_700_000_000 * 10**9  # fixed, so the same episode gives the same bag
CAMERA_FRAMES = {"exterior_image": "exterior_camera", "wrist_image": "wrist_camera"}
_TYPESTORE = typestore()


def _msg(msgtype: str, **fields: object) -> object:
    return _TYPESTORE.types[msgtype](**fields)


def _header(stamp_ns: int, frame_id: str = "") -> object:
    sec, nanosec = divmod(int(stamp_ns), 10**9)
    return _msg("std_msgs/msg/Header", stamp=_msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec),
                frame_id=frame_id)


def image_msg(image: np.ndarray, stamp_ns: int, frame_id: str) -> object:
    """A sensor_msgs/Image (rgb8) from an HxWx3 uint8 array."""
    h, w, _ = image.shape
    return _msg("sensor_msgs/msg/Image", header=_header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8",
                is_bigendian=0, step=w * 3, data=np.ascontiguousarray(image, dtype=np.uint8).reshape(-1))


def joint_state_msg(names: tuple[str, ...], stamp_ns: int, position: np.ndarray, velocity: np.ndarray,
                    effort: np.ndarray | None = None) -> object:
    """A sensor_msgs/JointState."""
    return _msg("sensor_msgs/msg/JointState", header=_header(stamp_ns), name=list(names),
                position=np.asarray(position, dtype=np.float64), velocity=np.asarray(velocity, dtype=np.float64),
                effort=np.asarray(effort if effort is not None else [], dtype=np.float64))


def trajectory_msg(positions: np.ndarray, period_s: float) -> object:
    """A one-point trajectory_msgs/JointTrajectory for fr3_joint1..7, header stamp 0 (start on receipt)."""
    sec, nanosec = divmod(int(round(period_s * 1e9)), 10**9)
    point = _msg("trajectory_msgs/msg/JointTrajectoryPoint", positions=np.asarray(positions, dtype=np.float64),
                 velocities=np.zeros(0), accelerations=np.zeros(0), effort=np.zeros(0),
                 time_from_start=_msg("builtin_interfaces/msg/Duration", sec=sec, nanosec=nanosec))
    return _msg("trajectory_msgs/msg/JointTrajectory", header=_header(0), joint_names=list(FR3_ARM_JOINTS),
                points=[point])


def action_msg(action: np.ndarray) -> object:
    """A std_msgs/Float64MultiArray holding one DROID action."""
    dim = _msg("std_msgs/msg/MultiArrayDimension", label="droid_action", size=len(action), stride=len(action))
    layout = _msg("std_msgs/msg/MultiArrayLayout", dim=[dim], data_offset=0)
    return _msg("std_msgs/msg/Float64MultiArray", layout=layout, data=np.asarray(action, dtype=np.float64))


def _step_messages(episode: Episode, k: int, stamp_ns: int, period_s: float) -> list[tuple[str, object]]:
    obs = episode.observations
    out = [(key, image_msg(obs[key][k], stamp_ns, frame)) for key, frame in CAMERA_FRAMES.items() if key in obs]
    out += [
        ("joint_states", joint_state_msg(FR3_ARM_JOINTS, stamp_ns, obs["joint_positions"][k],
                                         obs["joint_velocities"][k], episode.joint_efforts[k])),
        ("gripper_states", joint_state_msg(FR3_FINGER_JOINTS, stamp_ns, obs["finger_positions"][k],
                                           episode.finger_velocities[k])),
        ("droid_action", action_msg(episode.actions[k])),
        ("arm_command", trajectory_msg(episode.arm_targets[k], period_s)),
        ("gripper_command", _msg("std_msgs/msg/Float64", data=float(episode.gripper_widths[k]))),
    ]
    if k % max(1, int(round(episode.control_rate_hz))) == 0:
        out.insert(0, ("instruction", _msg("std_msgs/msg/String", data=episode.instruction)))
    return out


def write_episode_bag(episode: Episode, path: Path, storage: str = "sqlite3", start_ns: int = START_NS,
                      topics: Topics | None = None) -> Path:
    """Write `episode` as a rosbag2 directory at `path` (which must not exist).

    Args:
        episode: the episode (with images if the camera topics should be present).
        path: the bag directory to create.
        storage: 'sqlite3' (rosbag2's default) or 'mcap'.
        start_ns: stamp of the first step (ns since the epoch).
        topics: topic names; defaults to retain_ros.topics.Topics().

    Returns:
        The bag directory.

    Raises:
        ConfigError: unknown storage, or `path` already exists.
    """
    if storage not in STORAGES:
        raise ConfigError(f"unknown bag storage '{storage}'; use one of {', '.join(STORAGES)}")
    path = Path(path)
    if path.exists():
        raise ConfigError(f"bag path {path} already exists; remove it or choose another output directory")
    topics = topics or Topics()
    period_s = 1.0 / episode.control_rate_hz
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        connections = {}
        for k in range(episode.num_steps):
            stamp_ns = start_ns + int(round(k * period_s * 1e9))
            for key, msg in _step_messages(episode, k, stamp_ns, period_s):
                if key not in connections:
                    connections[key] = writer.add_connection(getattr(topics, key), MSG_TYPES[key],
                                                             typestore=_TYPESTORE)
                writer.write(connections[key], stamp_ns, _TYPESTORE.serialize_cdr(msg, MSG_TYPES[key]))
    return path
