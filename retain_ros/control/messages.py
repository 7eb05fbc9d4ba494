"""ROS messages -> numpy: camera images, joint states by name, joint trajectories, action chunks, stamps.

The readers only read fields, so they take rclpy messages and `rosbags` messages alike: the node's subscription
callbacks and offline bag evaluation convert with exactly this code, and it imports no ROS package. Every failure is a
`ConversionError` that names the message, the problem and the fix. The builders (numpy -> message) need the ROS message
classes and live in `retain_ros.ros.conversions`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retain_ros.errors import ConfigError

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


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def duration_to_seconds(duration) -> float:
    """builtin_interfaces/Duration -> seconds."""
    return duration.sec + duration.nanosec * 1e-9


def image_to_rgb(msg) -> np.ndarray:
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


def compressed_to_rgb(msg) -> np.ndarray:
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


def joint_positions(msg, names: Sequence[str], field: str = "position") -> np.ndarray:
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


@dataclass(frozen=True)
class JointReading:
    """A JointState's positions and, when the message has them, velocities of the named joints (in that order)."""

    positions: np.ndarray
    velocities: np.ndarray | None = None


def joint_reading(msg, names: Sequence[str]) -> JointReading:
    """Positions and velocities of `names` out of a JointState; velocities None when the message carries none.

    Raises:
        ConversionError: as `joint_positions`, for the positions and, when given, the velocities.
    """
    positions = joint_positions(msg, names)
    velocities = joint_positions(msg, names, "velocity") if len(msg.velocity) else None
    return JointReading(positions, velocities)


def trajectory_arrays(msg, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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


def action_chunk_arrays(msg) -> tuple[np.ndarray, dict[str, tuple[float, ...]]]:
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
