"""retain_ros_msgs: the generated classes, the bag typestore and the node's builder agree byte for byte.

The .msg files are read by two code paths: rosidl (colcon, or msg/install_into_venv.sh here) and the rosbags typestore
that records and reads bags. A field added to one and not the other would corrupt bags silently, so the same message
goes through both, in both directions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from retain_ros_msgs.msg import ActionChunk as ActionChunkMsg

from retain_ros.bag_types import ACTION_CHUNK, typestore
from retain_ros.paths import msg_dir
from retain_ros.policy.interface import DROID_ACTION_SPACE, ActionChunk
from retain_ros.control import messages
from retain_ros.ros import conversions as conv
from retain_ros.control.chunk_executor import PlannedCommand
from retain_ros.control.control_loop import Executed
from retain_ros.serving.model_manager import ServingModel
from retain_ros.serving.recipes import MergeRequest

ACTIONS = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)


def executed() -> Executed:
    chunk = ActionChunk(ACTIONS, 1 / 15, DROID_ACTION_SPACE, observation_stamp_ns=1_700_000_000_123_456_789)
    plan = PlannedCommand(np.array([0.1, 0.2, 0.3]), np.zeros((3, 7)), np.zeros((3, 7)), 1.0, skipped=2,
                          clamped=True, sent_ns=0, start=np.zeros(7))
    model = ServingModel(policy=None, weights_id="ab" * 32, alphas={"vision": (0.25,), "action": (0.5, 0.75)},
                         request=MergeRequest("base", ("ft",), route="push .*"), generation=3)
    return Executed(chunk, plan, model, inference_s=0.026, image_stamp_ns=1_700_000_000_100_000_000, sequence=41,
                    instruction="push the red cube")


def test_the_node_message_round_trips_through_rclpy_and_the_bag_typestore():
    msg = conv.action_chunk_message(executed(), stamp_ns=1_700_000_000_200_000_000)
    raw = serialize_message(msg)
    bag_msg = typestore().deserialize_cdr(raw, ACTION_CHUNK)
    back = deserialize_message(bytes(typestore().serialize_cdr(bag_msg, ACTION_CHUNK)), ActionChunkMsg)
    for found in (msg, bag_msg, back):
        actions, alphas = messages.action_chunk_arrays(found)
        np.testing.assert_array_equal(actions, ACTIONS)
        assert alphas == {"vision": (0.25,), "action": (0.5, 0.75)}
        assert found.weights_id == "ab" * 32 and found.generation == 3 and found.sequence == 41
        assert (found.instruction, found.route) == ("push the red cube", "push .*")
        assert messages.stamp_to_ns(found.observation_stamp) == 1_700_000_000_123_456_789
        assert messages.stamp_to_ns(found.image_stamp) == 1_700_000_000_100_000_000
        assert messages.stamp_to_ns(found.header.stamp) == 1_700_000_000_200_000_000
        assert (found.horizon, found.action_dim, found.action_space) == (10, 8, "droid_joint_velocity")
        assert (found.skipped, found.executed, found.clamped) == (2, 3, True)
        assert abs(found.dt - 1 / 15) < 1e-12 and abs(found.inference_time - 0.026) < 1e-12
    # same layout (alignment padding bytes are unspecified in CDR, so compare sizes rather than bytes)
    assert len(typestore().serialize_cdr(bag_msg, ACTION_CHUNK)) == len(raw)


def test_truncated_actions_are_named():
    msg = conv.action_chunk_message(executed(), stamp_ns=0)
    msg.actions = msg.actions[:-1]
    try:
        messages.action_chunk_arrays(msg)
    except messages.ConversionError as exc:
        assert "79 actions values, not horizon x action_dim = 10 x 8" in str(exc)
    else:
        raise AssertionError("a truncated chunk was accepted")


def test_the_installed_messages_are_built_from_these_definitions():
    """A stale build (msg/ edited, `make venv` not re-run) would publish an old layout; say how to rebuild."""
    share = Path(sys.prefix) / "share" / "retain_ros_msgs" / "msg"
    for source in sorted(msg_dir().glob("*.msg")):
        built = share / source.name
        assert built.is_file() and built.read_text() == source.read_text(), (
            f"{built} differs from {source}: rebuild the messages with `make venv` (msg/install_into_venv.sh)")
