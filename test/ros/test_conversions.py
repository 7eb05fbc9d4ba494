"""Message <-> numpy conversion (no ROS graph needed: messages are plain Python objects)."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, JointState

from retain_ros.control import messages
from retain_ros.ros import conversions as conv
from retain_ros.topics import FR3_ARM_JOINTS

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_round_trip_exactly(encoding):
    msg = conv.rgb_to_image(RGB, encoding, stamp_ns=1_500_000_001, frame_id="cam")
    assert msg.encoding == encoding and messages.stamp_to_ns(msg.header.stamp) == 1_500_000_001
    np.testing.assert_array_equal(messages.image_to_rgb(msg), RGB)


def test_mono_is_replicated_and_row_padding_is_honoured():
    msg = conv.rgb_to_image(RGB, "mono8")
    out = messages.image_to_rgb(msg)
    assert out.shape == (5, 7, 3) and np.all(out[..., 0] == out[..., 2])
    padded = conv.rgb_to_image(RGB, "rgb8")
    rows = np.frombuffer(bytes(padded.data), np.uint8).reshape(5, 21)
    padded.data = np.hstack([rows, np.zeros((5, 3), np.uint8)]).tobytes()
    padded.step = 24
    np.testing.assert_array_equal(messages.image_to_rgb(padded), RGB)


def test_bad_images_name_the_problem():
    msg = conv.rgb_to_image(RGB)
    msg.encoding = "16UC1"
    with pytest.raises(messages.ConversionError, match="16UC1.*rgb8"):
        messages.image_to_rgb(msg)
    msg = conv.rgb_to_image(RGB)
    msg.height = 50
    with pytest.raises(messages.ConversionError, match="bytes"):
        messages.image_to_rgb(msg)
    with pytest.raises(messages.ConversionError, match="cannot be decoded"):
        messages.compressed_to_rgb(CompressedImage(format="jpeg", data=b"nope"))


def test_png_round_trips_and_jpeg_decodes_close():
    np.testing.assert_array_equal(messages.compressed_to_rgb(conv.rgb_to_compressed(RGB, "png")), RGB)
    smooth = np.full((16, 16, 3), 120, np.uint8)
    assert np.abs(messages.compressed_to_rgb(conv.rgb_to_compressed(smooth)).astype(int) - 120).max() <= 3


def test_joint_states_are_mapped_by_name():
    names = ["extra", *reversed(FR3_ARM_JOINTS)]
    msg = JointState(name=names, position=[9.0, *[float(i) for i in range(7, 0, -1)]])
    np.testing.assert_array_equal(messages.joint_positions(msg, FR3_ARM_JOINTS), np.arange(1, 8))
    with pytest.raises(messages.ConversionError, match="fr3_joint7.*joint_names"):
        messages.joint_positions(JointState(name=list(FR3_ARM_JOINTS[:6]), position=[0.0] * 6), FR3_ARM_JOINTS)
    with pytest.raises(messages.ConversionError, match="not finite"):
        messages.joint_positions(JointState(name=list(FR3_ARM_JOINTS), position=[float("nan")] * 7), FR3_ARM_JOINTS)


def test_trajectory_round_trip():
    times = np.array([0.05, 0.1, 0.2])
    positions = np.arange(21, dtype=float).reshape(3, 7)
    velocities = np.vstack([np.ones((2, 7)), np.zeros((1, 7))])
    msg = conv.trajectory(FR3_ARM_JOINTS, times, positions, velocities)
    t, p, v = messages.trajectory_arrays(msg, FR3_ARM_JOINTS)
    np.testing.assert_allclose(t, times, atol=1e-9)
    np.testing.assert_array_equal(p, positions)
    np.testing.assert_array_equal(v, velocities)
