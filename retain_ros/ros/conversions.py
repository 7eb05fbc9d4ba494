"""ROS messages <-> numpy: camera images, joint states by name, joint trajectories, action chunks, stamps.

Used where cv_bridge is missing (pip-only machines) and also where it is installed: these functions cover exactly the
encodings the node accepts, and every failure is a `ConversionError` that names the message, the problem and the fix.

The readers (message -> numpy) only read fields, so they take rclpy messages and `rosbags` messages alike: offline
bag evaluation (`retain_ros/evaluate/`) rebuilds observations with exactly the code the node runs. The ROS message
classes are imported only by the builders (numpy -> message), so importing this module needs no ROS install.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from typing import TYPE_CHECKING

import numpy as np

from retain_ros.errors import ConfigError

if TYPE_CHECKING:  # the builders import the classes when called; readers take any object with these fields
    from builtin_interfaces.msg import Duration, Time
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from retain_ros_msgs.msg import ActionChunk as ActionChunkMsg
    from trajectory_msgs.msg import JointTrajectory

    from retain_ros.ros.control_loop import Executed

# encoding -> (channels, index order that turns the channels into RGB; None for mono)
ENCODINGS: dict[str, tuple[int, tuple[int, ...] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}


class ConversionError(ConfigError):
    """A message could not be converted; the text names the field at fault and the fix."""


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def seconds_to_duration(seconds: float) -> Duration:
    """Seconds (>= 0) -> builtin_interfaces/Duration, rounded to the nanosecond."""
    from builtin_interfaces.msg import Duration

    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Duration(sec=sec, nanosec=nanosec)


def duration_to_seconds(duration: Duration) -> float:
    """builtin_interfaces/Duration -> seconds."""
    return duration.sec + duration.nanosec * 1e-9


def image_to_rgb(msg: Image) -> np.ndarray:
    """Decode a sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) into uint8 HxWx3 RGB.

    Row padding (`step` > width * channels) is honoured; alpha is dropped; mono is replicated to three channels.

    Raises:
        ConversionError: unsupported encoding, or a size that does not fit the data.
    """
    if msg.encoding not in ENCODINGS:
        raise ConversionError(f"image encoding '{msg.encoding}' (frame '{msg.header.frame_id}') is not supported; "
                              f"use one of {', '.join(ENCODINGS)} or sensor_msgs/CompressedImage (jpeg/png)")
    channels, order = ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h < 1 or w < 1 or step < w * channels:
        raise ConversionError(f"image {w}x{h} {msg.encoding} has step {step} < width * channels = {w * channels}; "
                              "the publisher filled the message wrongly")
    try:
        data = np.frombuffer(msg.data, dtype=np.uint8)  # array.array / bytes / memoryview: no copy
    except TypeError:
        data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if data.size < h * step:
        raise ConversionError(f"image {w}x{h} {msg.encoding} needs {h * step} bytes of data, got {data.size}")
    rows = data[:h * step].reshape(h, step)[:, :w * channels].reshape(h, w, channels)
    if order is None:
        return np.repeat(rows, 3, axis=2)
    if channels == 3 and order == (0, 1, 2):
        return rows.copy()  # the message's buffer is not ours to keep
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    for dst, src in enumerate(order):  # one strided copy per channel: ~6x faster than fancy indexing at 128 px
        rgb[:, :, dst] = rows[:, :, src]
    return rgb


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8", stamp_ns: int = 0, frame_id: str = "") -> Image:
    """Encode a uint8 HxWx3 RGB array as a sensor_msgs/Image in `encoding` (mono8 takes the mean of the channels).

    Raises:
        ConversionError: unknown encoding or not an HxWx3 uint8 array.
    """
    from sensor_msgs.msg import Image

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


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG, anything Pillow reads) into uint8 HxWx3 RGB.

    Raises:
        ConversionError: the data is not an image Pillow can decode.
    """
    from PIL import Image as PILImage, UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ConversionError(f"compressed image (format '{msg.format}', frame '{msg.header.frame_id}') cannot be "
                              f"decoded ({exc}); publish jpeg or png") from None


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", stamp_ns: int = 0, quality: int = 90) -> CompressedImage:
    """Encode uint8 HxWx3 RGB as a sensor_msgs/CompressedImage ('jpeg' or 'png')."""
    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage

    buffer = io.BytesIO()
    PILImage.fromarray(np.asarray(rgb, np.uint8)).save(buffer, format=fmt.upper(), quality=quality)
    msg = CompressedImage(format=fmt)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.data = buffer.getvalue()
    return msg


def joint_positions(msg: JointState, names: Sequence[str], field: str = "position") -> np.ndarray:
    """Pick the values of `names` (in that order) out of a JointState; order and extra joints do not matter.

    Raises:
        ConversionError: a joint is missing, the arrays are shorter than the names, or a value is not finite.
    """
    values = list(getattr(msg, field))
    if len(values) < len(msg.name):
        raise ConversionError(f"JointState has {len(msg.name)} names but {len(values)} {field} values")
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ConversionError(f"JointState lacks joint(s) {missing} (it has {list(msg.name)}). Fix: set the "
                              "`joint_names` parameter to your robot's joint names or remap the joint_states topic")
    out = np.array([values[index[n]] for n in names], dtype=np.float64)
    if not np.all(np.isfinite(out)):
        bad = [n for n, v in zip(names, out) if not np.isfinite(v)]
        raise ConversionError(f"JointState {field} of {bad} is not finite ({out.tolist()}); the robot driver "
                              "reports an invalid state")
    return out


def joint_state(names: Sequence[str], positions: np.ndarray, velocities: np.ndarray | None = None,
                efforts: np.ndarray | None = None, stamp_ns: int = 0) -> JointState:
    """Build a sensor_msgs/JointState."""
    from sensor_msgs.msg import JointState

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
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp = ns_to_stamp(stamp_ns)
    for k, t in enumerate(times_s):
        point = JointTrajectoryPoint(positions=[float(v) for v in positions[k]],
                                     time_from_start=seconds_to_duration(float(t)))
        if velocities is not None:
            point.velocities = [float(v) for v in velocities[k]]
        msg.points.append(point)
    return msg


def trajectory_arrays(msg: JointTrajectory, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(times_s, positions, velocities or None) of a JointTrajectory with the columns in `names` order.

    Raises:
        ConversionError: joints missing from the message or points of the wrong size.
    """
    index = {n: i for i, n in enumerate(msg.joint_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ConversionError(f"JointTrajectory lacks joint(s) {missing} (it has {list(msg.joint_names)})")
    cols = [index[n] for n in names]
    times = np.array([duration_to_seconds(p.time_from_start) for p in msg.points], dtype=np.float64)
    try:
        positions = np.array([[p.positions[c] for c in cols] for p in msg.points], dtype=np.float64)
        has_v = bool(msg.points) and all(len(p.velocities) for p in msg.points)
        velocities = (np.array([[p.velocities[c] for c in cols] for p in msg.points], dtype=np.float64)
                      if has_v else None)
    except IndexError:
        raise ConversionError("JointTrajectory point arrays are shorter than joint_names") from None
    return times, positions.reshape(len(times), len(names)), velocities


def action_chunk_message(done: Executed, stamp_ns: int) -> ActionChunkMsg:
    """Build retain_ros_msgs/ActionChunk: the raw policy output of one chunk with the merge that produced it."""
    from retain_ros_msgs.msg import ActionChunk as ActionChunkMsg, GroupAlpha

    chunk, plan, model = done.chunk, done.plan, done.model
    msg = ActionChunkMsg(sequence=int(done.sequence), weights_fingerprint=model.fingerprint,
                         generation=int(model.generation), action_space=chunk.space.kind, horizon=chunk.horizon,
                         dt=float(chunk.dt_s), action_dim=int(chunk.actions.shape[1]),
                         inference_time=float(done.inference_s), skipped=int(plan.skipped),
                         executed=len(plan.times_s), clamped=bool(plan.clamped))
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.observation_stamp = ns_to_stamp(chunk.observation_stamp_ns)
    msg.image_stamp = ns_to_stamp(done.image_stamp_ns)
    msg.alphas = [GroupAlpha(group=g, alphas=[float(a) for a in values]) for g, values in model.alphas.items()]
    msg.actions = np.ascontiguousarray(chunk.actions, dtype=np.float32).reshape(-1)
    return msg


def action_chunk_arrays(msg: ActionChunkMsg) -> tuple[np.ndarray, dict[str, tuple[float, ...]]]:
    """(actions (horizon, action_dim) float32, group -> alphas) of an ActionChunk message (rclpy or rosbags).

    Raises:
        ConversionError: the actions do not hold horizon x action_dim numbers.
    """
    actions = np.asarray(msg.actions, dtype=np.float32)
    if actions.size != int(msg.horizon) * int(msg.action_dim):
        raise ConversionError(f"ActionChunk holds {actions.size} actions values, not horizon x action_dim = "
                              f"{msg.horizon} x {msg.action_dim}")
    alphas = {a.group: tuple(float(v) for v in a.alphas) for a in msg.alphas}
    return actions.reshape(int(msg.horizon), int(msg.action_dim)), alphas
