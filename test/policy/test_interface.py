"""The Policy interface: observation validation errors, the DROID action convention, the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from policy_helpers import observation

from retain_ros.errors import ConfigError
from retain_ros.policy import ActionSpace, Observation, Policy, load_policy
from retain_ros.policy.interface import validate_observation


def test_reference_policy_implements_the_protocol(tiny_policy):
    assert isinstance(tiny_policy, Policy)


@pytest.mark.parametrize("mutate, words", [
    (lambda o: o.images.pop("wrist"), ["wrist", "lacks camera"]),
    (lambda o: o.images.__setitem__("exterior", o.images["exterior"].astype(np.float32)), ["dtype float32", "uint8"]),
    (lambda o: o.images.__setitem__("exterior", np.zeros((8, 8, 4), np.uint8)), ["(8, 8, 4)", "HxWx3"]),
    (lambda o: o.images.__setitem__("exterior", np.zeros((8, 8), np.uint8)), ["(8, 8)", "HxWx3"]),
    (lambda o: setattr(o, "joint_positions", np.zeros(6)), ["joint_positions", "(6,)", "(7,)"]),
    (lambda o: setattr(o, "joint_positions", np.array([np.nan] * 7)), ["non-finite"]),
    (lambda o: setattr(o, "gripper_position", 80.0), ["gripper_position=80.0", "[0, 1]"]),
    (lambda o: setattr(o, "instruction", None), ["instruction"]),
])
def test_bad_observations_name_the_problem(tiny_policy, mutate, words):
    obs = observation()
    mutate(obs)
    with pytest.raises(ConfigError) as info:
        tiny_policy.predict(obs)
    for word in words:
        assert word in str(info.value)


def test_not_an_observation_is_refused(tiny_policy):
    with pytest.raises(ConfigError, match="Observation"):
        validate_observation({"images": {}}, tiny_policy.spec)


def test_droid_clip_and_gripper_binarisation():
    space = ActionSpace()
    out = space.clip(np.array([[2.0, -3.0, 0.5, 0, 0, 0, 0, 0.7], [0, 0, 0, 0, 0, 0, 0, 0.2]]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], [1.0, -1.0, 0.5, 0, 0, 0, 0, 1.0])
    assert out[1, 7] == 0.0


@pytest.mark.parametrize("kwargs, word", [({"kind": "torque"}, "torque"), ({"dim": 7}, "dim=7"),
                                          ({"arm_low": 1.0}, "arm_low")])
def test_bad_action_space_is_refused(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        ActionSpace(**kwargs)


def test_load_policy_unknown_type_lists_known_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"type": "retain_reference_vlaa"}))
    with pytest.raises(ConfigError) as info:
        load_policy(tmp_path)
    assert "retain_reference_vla" in str(info.value) and "did you mean" in str(info.value)


@pytest.mark.parametrize("content, word", [(None, "no config.json"), ("{", "not valid JSON"), ("{}", "no 'type'")])
def test_load_policy_bad_config(tmp_path, content, word):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(ConfigError, match=word):
        load_policy(tmp_path)


def test_load_policy_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "nope")


def test_observation_with_extra_camera_is_fine(tiny_policy):
    obs = observation(cameras=("exterior", "wrist", "left"))
    assert tiny_policy.predict(obs).actions.shape == (4, 8)


def test_predict_copies_the_stamp(tiny_policy):
    obs = Observation(observation().images, np.zeros(7), 1.0, "x", stamp_ns=42)
    assert tiny_policy.predict(obs).observation_stamp_ns == 42
