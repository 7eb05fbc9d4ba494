"""numpy -> ROS messages: camera images, joint states, joint trajectories, the node's ActionChunk, stamps.

Used where cv_bridge is missing (pip-only machines) and also where it is installed. The readers (message -> numpy)
are in `retain_ros.control.messages`, without ROS imports, so that offline evaluation runs the node's own readers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from retain_ros.control.messages import ENCODINGS, ConversionError

if TYPE_CHECKING:
    from retain_ros_msgs.msg import ActionChunk as ActionChunkMsg

    from retain_ros.control.control_loop import Executed


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def seconds_to_duration(seconds: float) -> Duration:
    """Seconds (>= 0) -> builtin_interfaces/Duration, rounded to the nanosecond."""
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Duration(sec=sec, nanosec=nanosec)


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8", stamp_ns: int = 0, frame_id: str = "") -> Image:
    """Encode a uint8 HxWx3 RGB array as a sensor_msgs/Image in `encoding` (mono8 takes the mean of the channels).

    Raises:
        ConversionError: unknown encoding or not an HxWx3 uint8 array.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConversionError(f"rgb_to_image needs a uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
    if encoding not in ENCODINGS:
        raise ConversionError(f"encoding '{encoding}' is not supported; use one of {', '.join(ENCODINGS)}")
    channels, order = ENCODINGS[encoding]
    if order is None:
        pixels = rgb.mean(axis=2).round().astype(np.uint8)[:, :, None]
    else:
        pixels = np.empty((*rgb.shape[:2], channels), np.uint8)
        pixels[:, :, list(order)] = rgb
        if channels == 4:
            pixels[:, :, 3] = 255
    msg = Image(encoding=encoding, height=rgb.shape[0], width=rgb.shape[1], step=rgb.shape[1] * channels)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", stamp_ns: int = 0, quality: int = 90) -> CompressedImage:
    """Encode uint8 HxWx3 RGB as a sensor_msgs/CompressedImage ('jpeg' or 'png')."""
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(np.asarray(rgb, np.uint8)).save(buffer, format=fmt.upper(), quality=quality)
    msg = CompressedImage(format=fmt)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.data = buffer.getvalue()
    return msg


def joint_state(names: Sequence[str], positions: np.ndarray, velocities: np.ndarray | None = None,
                efforts: np.ndarray | None = None, stamp_ns: int = 0) -> JointState:
    """Build a sensor_msgs/JointState."""
    msg = JointState(name=list(names), position=[float(v) for v in positions])
    if velocities is not None:
        msg.velocity = [float(v) for v in velocities]
    if efforts is not None:
        msg.effort = [float(v) for v in efforts]
    msg.header.stamp = ns_to_stamp(stamp_ns)
    return msg


def trajectory(names: Sequence[str], times_s: np.ndarray, positions: np.ndarray,
               velocities: np.ndarray | None = None, stamp_ns: int = 0) -> JointTrajectory:
    """Build a trajectory_msgs/JointTrajectory (header stamp 0 = start on receipt).

    Args:
        names: joint names of the columns.
        times_s: (N,) time_from_start of each point.
        positions: (N, J) joint positions (rad).
        velocities: optional (N, J) joint velocities (rad/s).
        stamp_ns: header stamp (0 = now).
    """
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp = ns_to_stamp(stamp_ns)
    for k, t in enumerate(times_s):
        point = JointTrajectoryPoint(positions=[float(v) for v in positions[k]],
                                     time_from_start=seconds_to_duration(float(t)))
        if velocities is not None:
            point.velocities = [float(v) for v in velocities[k]]
        msg.points.append(point)
    return msg


def action_chunk_message(done: Executed, stamp_ns: int) -> ActionChunkMsg:
    """Build retain_ros_msgs/ActionChunk: the raw policy output of one chunk with the merge that produced it."""
    from retain_ros_msgs.msg import ActionChunk as ActionChunkMsg, GroupAlpha

    chunk, plan, model = done.chunk, done.plan, done.model
    msg = ActionChunkMsg(sequence=int(done.sequence), weights_id=model.weights_id,
                         generation=int(model.generation), instruction=done.instruction,
                         route=model.request.route, action_space=chunk.space.kind, horizon=chunk.horizon,
                         dt=float(chunk.dt_s), action_dim=int(chunk.actions.shape[1]),
                         inference_time=float(done.inference_s), skipped=int(plan.skipped),
                         executed=plan.actions_executed, clamped=bool(plan.clamped))
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.observation_stamp = ns_to_stamp(chunk.observation_stamp_ns)
    msg.image_stamp = ns_to_stamp(done.image_stamp_ns)
    msg.alphas = [GroupAlpha(group=g, alphas=[float(a) for a in values]) for g, values in model.alphas.items()]
    msg.actions = np.ascontiguousarray(chunk.actions, dtype=np.float32).reshape(-1)
    steered = done.steered
    msg.steering = steered.mode if steered is not None else "none"
    msg.steering_samples = int(steered.candidates.shape[0]) if steered is not None else 1
    msg.steering_index = int(steered.index) if steered is not None else 0
    msg.steering_value = float("nan") if steered is None or steered.value is None else steered.value
    msg.steering_spread = float("nan") if steered is None or steered.spread is None else steered.spread
    return msg
