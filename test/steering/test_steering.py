"""K samples from one batched forward, the K-sample choice, and value checkpoints refused with one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retain_ros.errors import ConfigError
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.interface import ActionSpace, PolicySpec
from retain_ros.policy.processor_reference import NormalizationStats
from retain_ros.policy.reference_policy import example_observation, random_policy
from retain_ros.steering.synthetic import first_joint_value as known_value
from retain_ros.steering.manager import SteeringManager, SteeringSetting
from retain_ros.steering.selection import Steerer
from retain_ros.steering.value_function import ValueFunction


@pytest.fixture
def policy():
    config = ReferenceVLAConfig.tiny(horizon=6, noise_scale=0.0)
    stats = NormalizationStats(np.zeros(8), np.ones(8), np.zeros(8), np.full(8, 0.3))
    return random_policy(config, seed=1, stats=stats)


def test_samples_come_from_one_batched_forward_and_the_first_is_the_policys_own(policy):
    obs = example_observation(policy.spec)
    own = policy.predict(obs).actions
    one = policy.sample_chunks(obs, 1)
    assert np.array_equal(one[0].actions, own)  # K = 1 is predict, bit for bit
    chunks = policy.sample_chunks(obs, 8, noise_scale=1.0, seed=5)
    assert len(chunks) == 8 and all(c.actions.shape == own.shape for c in chunks)
    np.testing.assert_allclose(chunks[0].actions, own, atol=1e-5)  # batched: equal up to float rounding
    arms = np.stack([c.actions[:, :7] for c in chunks])
    assert np.unique(arms.round(5), axis=0).shape[0] == 8  # the noise draws differ
    again = policy.sample_chunks(obs, 8, noise_scale=1.0, seed=5)
    assert all(np.array_equal(a.actions, b.actions) for a, b in zip(chunks, again))  # repeatable for a seed
    flat = policy.sample_chunks(obs, 4, noise_scale=0.0)
    np.testing.assert_allclose(np.stack([c.actions for c in flat]), np.stack([own] * 4), atol=1e-5)
    with pytest.raises(ConfigError, match="k >= 1"):
        policy.sample_chunks(obs, 0)


def test_value_steering_executes_the_argmax_sample(policy):
    value = known_value(policy.spec)
    obs = example_observation(policy.spec)
    steerer = Steerer("value", samples=12, value=value, noise_scale=1.0, seed=3)
    for _ in range(5):
        steered = steerer.choose(policy, obs)
        q = steered.candidates[:, 0, 0].astype(np.float64)  # the known Q: the first action's joint-1 number
        np.testing.assert_allclose(steered.values, q, atol=1e-6)
        assert steered.index == int(np.argmax(q))
        assert np.array_equal(steered.chunk.actions, steered.candidates[steered.index])
        assert steered.value == pytest.approx(q.max()) and steered.spread == pytest.approx(q.max() - q.min())
    unsteered = Steerer().choose(policy, obs)
    assert unsteered.index == 0 and unsteered.values is None
    assert np.array_equal(unsteered.chunk.actions, policy.predict(obs).actions)


def test_random_steering_is_repeatable_per_episode_seed(policy):
    obs = example_observation(policy.spec)
    steerer = Steerer("random", samples=6, noise_scale=1.0)
    steerer.reseed(11)
    first = [steerer.choose(policy, obs).index for _ in range(6)]
    steerer.reseed(11)
    assert [steerer.choose(policy, obs).index for _ in range(6)] == first
    assert len(set(first)) > 1
    with pytest.raises(ConfigError, match="unknown"):
        Steerer("best")
    with pytest.raises(ConfigError, match="value function"):
        Steerer("value")


def test_value_checkpoints_that_do_not_fit_are_refused_with_one_line(policy, tmp_path):
    value = known_value(policy.spec)
    good = value.save_pretrained(tmp_path / "value", {"note": "fixture"})
    loaded = ValueFunction.from_pretrained(good)
    obs = example_observation(policy.spec)
    chunks = np.stack([c.actions for c in policy.sample_chunks(obs, 4, 1.0)])
    np.testing.assert_array_equal(loaded.score(obs, chunks), value.score(obs, chunks))
    assert loaded.training_summary() == {"note": "fixture"}

    def refused(spec, words):
        with pytest.raises(ConfigError, match=words) as info:
            loaded.check_fits(spec)
        assert "\n" not in str(info.value)

    refused(PolicySpec(("front", "wrist"), (16, 16)), r"cameras .* \(missing \['exterior'\]\)")
    refused(PolicySpec(policy.spec.camera_names, (16, 16), ActionSpace("joint_position")), "action")
    refused(PolicySpec(policy.spec.camera_names, (16, 16), horizon=1), "first 2 actions")
    with pytest.raises(ConfigError, match="not a value function"):
        ValueFunction.from_pretrained(policy.save_pretrained(tmp_path / "policy"))
    words = json.loads((good / "tokenizer.json").read_text())
    words["words"] = words["words"][:-3]
    (good / "tokenizer.json").write_text(json.dumps(words))
    with pytest.raises(ConfigError, match="tokenizer .* does not fit its config"):
        ValueFunction.from_pretrained(good)
    bad = value.save_pretrained(tmp_path / "broken")
    (bad / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot be read as safetensors"):
        ValueFunction.from_pretrained(bad)


def test_the_manager_checks_at_once_loads_off_thread_and_swaps_at_the_next_chunk(policy, tmp_path):
    good = known_value(policy.spec).save_pretrained(tmp_path / "value")
    other = known_value(PolicySpec(("a", "b"), (16, 16))).save_pretrained(tmp_path / "other_cams")
    events = []
    manager = SteeringManager(policy.spec, can_sample=True, on_event=lambda level, text: events.append(text))
    obs = example_observation(policy.spec)
    assert manager.choose(policy, obs).mode == "none"
    with pytest.raises(ConfigError, match="needs steering_checkpoint"):
        manager.check(SteeringSetting("value", 10, ""))
    with pytest.raises(ConfigError, match="cameras"):
        manager.check(SteeringSetting("value", 10, str(other)))
    with pytest.raises(ConfigError, match="cannot draw several chunks"):
        SteeringManager(policy.spec, can_sample=False).check(SteeringSetting("value", 10, str(good)))
    setting = SteeringSetting("value", 5, str(good))
    manager.check(setting)
    manager.request(setting)
    for _ in range(200):  # the load runs on its own thread
        if not manager.status()["loading"]:
            break
        __import__("time").sleep(0.01)
    assert manager.status()["mode"] == "none"  # nothing changes until the control thread's next chunk
    steered = manager.choose(policy, obs)
    assert steered.mode == "value" and steered.candidates.shape[0] == 5
    status = manager.status()
    assert status["mode"] == "value" and status["samples"] == 5 and status["value"] == pytest.approx(steered.value)
    # a checkpoint that breaks after the check: the serving steering stays, the status says why
    broken = known_value(policy.spec).save_pretrained(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"garbage")
    manager.request(SteeringSetting("value", 5, str(broken)))
    for _ in range(200):
        if not manager.status()["loading"]:
            break
        __import__("time").sleep(0.01)
    assert manager.choose(policy, obs).mode == "value"
    status = manager.status()
    assert status["checkpoint"] == str(good) and "safetensors" in status["last_error"]
    manager.request(SteeringSetting("none"))
    assert manager.choose(policy, obs).mode == "none" and manager.status()["last_error"] == ""
