"""Recorded episodes: rosbag2 files (read back with rosbags) and dataset files match the episode exactly."""

import json

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from retain_ros.errors import ConfigError
from retain_ros.sim.bag import START_NS, write_episode_bag
from retain_ros.sim.dataset import load_episode, read_index, save_episode, write_index, index_entry
from retain_ros.sim.env import EnvConfig, TabletopEnv
from retain_ros.sim.episode import run_expert_episode
from retain_ros.topics import FR3_ARM_JOINTS, FR3_FINGER_JOINTS, MSG_TYPES, Topics

TS = get_typestore(Stores.ROS2_JAZZY)
STEPS = 18


@pytest.fixture(scope="module")
def episode():
    with TabletopEnv("pick_red", "appearance", EnvConfig(image_size=48, max_steps=STEPS)) as env:
        return run_expert_episode(env, seed=2)


def read_bag(path):
    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        messages = {}
        for conn, t_ns, raw in reader.messages():
            messages.setdefault(conn.topic, []).append((t_ns, TS.deserialize_cdr(raw, conn.msgtype)))
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return metadata, conns, messages


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_reads_back_with_the_node_topics_types_and_stamps(episode, tmp_path, storage):
    path = write_episode_bag(episode, tmp_path / "bag", storage=storage)
    assert (path / "metadata.yaml").is_file()
    metadata, conns, messages = read_bag(path)
    assert metadata["version"] == 9
    assert metadata["storage_identifier"] == storage
    assert metadata["message_count"] == sum(len(m) for m in messages.values())
    topics = Topics()
    expected = {getattr(topics, key): MSG_TYPES[key] for key in MSG_TYPES}
    assert {t: c.msgtype for t, c in conns.items()} == expected
    period_ns = int(round(1e9 / 15))
    stamps = [START_NS + int(round(k * 1e9 / 15)) for k in range(STEPS)]
    for topic, msgtype in expected.items():
        want = 2 if topic == topics.instruction else STEPS  # the instruction goes out once per second
        assert len(messages[topic]) == want, topic
        times = [t for t, _ in messages[topic]]
        assert times == sorted(times)
    assert [t for t, _ in messages[topics.joint_states]] == stamps
    assert abs(stamps[1] - stamps[0] - period_ns) <= 1


def test_bag_messages_match_the_episode(episode, tmp_path):
    _, _, messages = read_bag(write_episode_bag(episode, tmp_path / "bag"))
    topics = Topics()
    for k in range(STEPS):
        t_ns, img = messages[topics.exterior_image][k]
        assert img.header.stamp.sec * 10**9 + img.header.stamp.nanosec == t_ns
        assert (img.encoding, img.height, img.width, img.step) == ("rgb8", 48, 48, 144)
        assert img.header.frame_id == "exterior_camera"
        np.testing.assert_array_equal(img.data.reshape(48, 48, 3), episode.observations["exterior_image"][k])
        _, wrist = messages[topics.wrist_image][k]
        np.testing.assert_array_equal(wrist.data.reshape(48, 48, 3), episode.observations["wrist_image"][k])
        assert wrist.header.frame_id == "wrist_camera"
        _, js = messages[topics.joint_states][k]
        assert tuple(js.name) == FR3_ARM_JOINTS
        np.testing.assert_array_equal(js.position, episode.observations["joint_positions"][k])
        _, gs = messages[topics.gripper_states][k]
        assert tuple(gs.name) == FR3_FINGER_JOINTS
        np.testing.assert_array_equal(gs.position, episode.observations["finger_positions"][k])
        _, act = messages[topics.droid_action][k]
        np.testing.assert_array_equal(act.data, episode.actions[k])
        _, cmd = messages[topics.arm_command][k]
        assert tuple(cmd.joint_names) == FR3_ARM_JOINTS and len(cmd.points) == 1
        np.testing.assert_array_equal(cmd.points[0].positions, episode.arm_targets[k])
        assert cmd.header.stamp.sec == 0 and cmd.header.stamp.nanosec == 0
        _, width = messages[topics.gripper_command][k]
        assert width.data == episode.gripper_widths[k]
    assert messages[topics.instruction][0][1].data == "pick up the red cube"


def test_bag_refuses_an_existing_path_and_unknown_storage(episode, tmp_path):
    with pytest.raises(ConfigError, match="already exists"):
        write_episode_bag(episode, tmp_path)
    with pytest.raises(ConfigError, match="sqlite3, mcap"):
        write_episode_bag(episode, tmp_path / "b", storage="rosbag1")


def test_dataset_episode_round_trips_exactly(episode, tmp_path):
    save_episode(episode, tmp_path / "ep.npz")
    loaded = load_episode(tmp_path / "ep.npz")
    assert (loaded.task, loaded.variation, loaded.seed, loaded.instruction, loaded.success) == \
        (episode.task, episode.variation, episode.seed, episode.instruction, episode.success)
    assert set(loaded.observations) == set(episode.observations)
    for key, value in episode.observations.items():
        np.testing.assert_array_equal(loaded.observations[key], value)
        assert loaded.observations[key].dtype == value.dtype
    np.testing.assert_array_equal(loaded.actions, episode.actions)
    assert loaded.observations["exterior_image"].dtype == np.uint8
    write_index(tmp_path, [index_entry(episode, "ep.npz", None)], 48, 15.0)
    index = read_index(tmp_path)
    assert index["episodes"][0]["instruction"] == episode.instruction
    assert json.loads((tmp_path / "index.json").read_text())["action_names"][-1] == "gripper_position"


def test_dataset_readers_name_bad_files(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="x.npz"):
        load_episode(tmp_path / "x.npz")
    with pytest.raises(ConfigError, match="index.json"):
        read_index(tmp_path)


def test_collection_with_noise_records_the_level_and_both_action_streams(tmp_path):
    from retain_ros.sim.collect import CollectConfig, collect

    collect(CollectConfig(tasks=("pick_red",), variation="id", episodes=1, out_dir=tmp_path, workers=1, image_size=16,
                          noise_rad_s=0.04), progress=False)
    entry = read_index(tmp_path)["episodes"][0]
    assert entry["noise_rad_s"] == 0.04
    loaded = load_episode(tmp_path / entry["file"])
    assert loaded.noise_rad_s == 0.04 and loaded.executed_actions.shape == loaded.actions.shape
    assert not np.array_equal(loaded.executed_actions, loaded.actions)
    with pytest.raises(ConfigError, match="--noise"):
        CollectConfig(tasks=("pick_red",), variation="id", episodes=1, out_dir=tmp_path, noise_rad_s=0.8)
