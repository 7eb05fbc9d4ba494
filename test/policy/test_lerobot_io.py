"""The LeRobot backend's parts that need no LeRobot: the stream/action mapping and its errors, the registry entries.

These run in every environment; the model tests (tiny pi0 / SmolVLA through LeRobot) are in test/lerobot_backend and
run in .venv-lerobot (`make test-lerobot`).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from retain_ros.errors import ConfigError
from retain_ros.policy import Observation, load_policy
from retain_ros.policy.lerobot_io import DROID_FR3_IO, LeRobotIO, check_features
from retain_ros.policy.registry import POLICIES

PI0_IMAGES = ["observation.images.base_0_rgb", "observation.images.left_wrist_0_rgb",
              "observation.images.right_wrist_0_rgb"]
HAS_LEROBOT = importlib.util.find_spec("lerobot") is not None


def observation(gripper: float = 0.25) -> Observation:
    image = np.zeros((4, 4, 3), np.uint8)
    return Observation({"exterior": image, "wrist": image}, np.arange(7) / 10, gripper, "pick")


def test_from_params_builds_the_droid_mapping_and_round_trips():
    io = LeRobotIO.from_params(["exterior=base_0_rgb", "wrist = observation.images.left_wrist_0_rgb"],
                               ["joint_positions", "gripper_position"], "droid_joint_velocity", "closed_is_1")
    assert io == DROID_FR3_IO and hash(io) == hash(DROID_FR3_IO)
    assert io.camera_names == ("exterior", "wrist") and io.state_dim == 8
    assert LeRobotIO.from_params(**io.to_params()) == io


@pytest.mark.parametrize("images, state, action, gripper, expected", [
    (["exterior"], ["joint_positions"], "joint_velocity", "closed_is_1", "is not CAMERA=FEATURE"),
    (["exterior=a", "exterior=b"], ["joint_positions"], "joint_velocity", "closed_is_1", "mapped twice"),
    (["exterior=a", "wrist=a"], ["joint_positions"], "joint_velocity", "closed_is_1", "more than one camera"),
    ([], ["joint_positions"], "joint_velocity", "closed_is_1", "lerobot_images is empty"),
    (["exterior=a"], [], "joint_velocity", "closed_is_1", "lerobot_state is empty"),
    (["exterior=a"], ["joint_position"], "joint_velocity", "closed_is_1", "did you mean 'joint_positions'"),
    (["exterior=a"], ["joint_positions"], "velocity", "closed_is_1",
     "use one of droid_joint_velocity, joint_velocity, joint_position"),
    (["exterior=a"], ["joint_positions"], "joint_velocity", "closed", "use one of closed_is_1, open_is_1"),
    ("exterior=a", ["joint_positions"], "joint_velocity", "closed_is_1", "string arrays"),
])
def test_every_parameter_mistake_names_the_value_and_the_choices(images, state, action, gripper, expected):
    with pytest.raises(ConfigError, match=expected):
        LeRobotIO.from_params(images, state, action, gripper)


def test_a_feature_outside_observation_images_is_refused():
    with pytest.raises(ConfigError, match="not a LeRobot image feature"):
        LeRobotIO({"exterior": "observation.state"}, ("joint_positions",))


def test_state_vector_follows_the_listed_components():
    obs = observation(gripper=0.25)
    np.testing.assert_allclose(DROID_FR3_IO.state_vector(obs), [*np.arange(7) / 10, 0.25], rtol=1e-6)
    io = LeRobotIO(DROID_FR3_IO.images, ("gripper_open", "joint_positions"))
    vector = io.state_vector(obs)
    assert vector.dtype == np.float32 and vector.shape == (8,) and vector[0] == pytest.approx(0.75)


def test_droid_actions_trim_and_convert_the_gripper():
    raw = np.tile(np.arange(10, dtype=np.float32) / 10, (3, 1))
    np.testing.assert_array_equal(DROID_FR3_IO.droid_actions(raw), raw[:, :8])
    flipped = LeRobotIO(DROID_FR3_IO.images, DROID_FR3_IO.state, gripper="open_is_1").droid_actions(raw)
    assert flipped[0, 7] == pytest.approx(0.3) and np.array_equal(flipped[:, :7], raw[:, :7])
    with pytest.raises(ConfigError, match="7 arm numbers then the gripper"):
        DROID_FR3_IO.droid_actions(raw[:, :6])


def test_check_features_accepts_the_droid_pi0_layout_and_reports_unfed_images():
    warnings = check_features(DROID_FR3_IO, PI0_IMAGES, state_dim=8, action_dim=8)
    assert len(warnings) == 1 and "right_wrist_0_rgb" in warnings[0]
    assert check_features(DROID_FR3_IO, PI0_IMAGES[:2], state_dim=None, action_dim=32, max_state_dim=32) == []


def test_a_missing_image_key_lists_the_policys_keys():
    with pytest.raises(ConfigError) as info:
        check_features(DROID_FR3_IO, ["observation.images.top", "observation.images.wrist"], 8, 8)
    message = str(info.value)
    assert "observation.images.top" in message and "observation.images.wrist" in message
    assert "lerobot_images" in message and "base_0_rgb" in message


@pytest.mark.parametrize("state_dim, action_dim, max_state_dim, expected", [
    (14, 8, None, "builds a state of 8 numbers but .* has 14"),
    (None, 8, 6, "at most 6"),
    (8, 6, None, "outputs 6 numbers per action"),
])
def test_state_and_action_sizes_that_do_not_fit_are_refused(state_dim, action_dim, max_state_dim, expected):
    with pytest.raises(ConfigError, match=expected):
        check_features(DROID_FR3_IO, PI0_IMAGES[:2], state_dim, action_dim, max_state_dim)


def test_lerobot_types_are_registered():
    assert {"pi0", "pi05", "smolvla"} <= set(POLICIES.names())


@pytest.mark.skipif(HAS_LEROBOT, reason="LeRobot is installed here; the missing-LeRobot message needs an env without")
@pytest.mark.parametrize("kind", ["pi0", "pi05", "smolvla"])
def test_without_lerobot_loading_says_how_to_get_it(tmp_path, kind):
    (tmp_path / "config.json").write_text(json.dumps({"type": kind}))
    with pytest.raises(ConfigError) as info:
        load_policy(tmp_path)
    message = str(info.value)
    assert "LeRobot" in message and "make lerobot-env" in message and ".venv-lerobot" in message
    assert "pip install 'lerobot[pi,smolvla]'" in message


def test_an_unknown_lerobot_like_type_lists_the_known_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"type": "smolvl"}))
    with pytest.raises(ConfigError, match="did you mean 'smolvla'.*pi0, pi05"):
        load_policy(tmp_path)
