"""The reference VLA behind the Policy interface: shapes, determinism, checkpoints, the atomic weight swap."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from policy_helpers import observation, tiny_config, tiny_stats
from safetensors.torch import load_file, save_file

from retain_ros.errors import ConfigError
from retain_ros.policy import load_policy
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.reference_policy import ReferencePolicy, random_policy


def test_predict_shape_dtype_finite_and_convention(tiny_policy):
    chunk = tiny_policy.predict(observation())
    assert chunk.actions.shape == (tiny_policy.spec.horizon, 8)
    assert chunk.actions.dtype == np.float32
    assert np.all(np.isfinite(chunk.actions))
    assert np.all(np.abs(chunk.actions[:, :7]) <= 1.0)
    assert set(np.unique(chunk.actions[:, 7])) <= {0.0, 1.0}
    assert chunk.dt_s == pytest.approx(1 / 15) and chunk.space == tiny_policy.spec.action_space


def test_same_seed_same_output_and_batch_of_one():
    a = random_policy(tiny_config(), seed=3, stats=tiny_stats())
    b = random_policy(tiny_config(), seed=3, stats=tiny_stats())
    obs = observation(1)
    np.testing.assert_array_equal(a.predict(obs).actions, b.predict(obs).actions)
    np.testing.assert_array_equal(a.predict(obs).actions, a.predict(obs).actions)
    c = random_policy(tiny_config(), seed=4, stats=tiny_stats())
    assert not np.array_equal(a.predict(obs).actions, c.predict(obs).actions)


def test_noise_scale_zero_starts_the_sampler_at_the_mode_whatever_the_seed():
    """noise_scale 0 removes the spread between noise draws: the seed of the noise no longer matters."""
    obs = observation(1)
    model = random_policy(tiny_config(), seed=3, stats=tiny_stats()).model
    outputs = {}
    for scale in (0.0, 1.0):
        config = tiny_config(noise_scale=scale)
        for seed in (0, 1):
            outputs[scale, seed] = ReferencePolicy(config, tiny_stats(), model, seed=seed).predict(obs).actions
    np.testing.assert_array_equal(outputs[0.0, 0], outputs[0.0, 1])
    assert not np.array_equal(outputs[1.0, 0], outputs[1.0, 1])


def test_images_of_any_size_are_accepted(tiny_policy):
    for size in ((16, 16), (9, 40), (100, 30)):
        assert tiny_policy.predict(observation(size=size)).actions.shape == (4, 8)


def test_unseen_words_change_the_output_deterministically(tiny_policy):
    a = tiny_policy.predict(observation(instruction="nudge the vermilion cube")).actions
    b = tiny_policy.predict(observation(instruction="nudge the vermilion cube")).actions
    np.testing.assert_array_equal(a, b)
    ids = {word: tiny_policy.processor.tokenizer.encode_batch([f"nudge the {word} cube"])[0][0].tolist()
           for word in ("vermilion", "magenta")}
    assert ids["vermilion"] != ids["magenta"]  # two unseen words in two hash buckets, not one shared <unk>
    inputs = {w: tiny_policy.processor.observation_inputs(observation(instruction=f"nudge the {w} cube"))
              for w in ids}
    prefixes = {w: tiny_policy.model.encode_prefix(x["images"], x["token_ids"], x["token_mask"])[0]
                for w, x in inputs.items()}
    assert not torch.equal(prefixes["vermilion"], prefixes["magenta"])


def test_save_load_round_trip_is_exact(tiny_policy, tiny_checkpoint):
    loaded = load_policy(tiny_checkpoint)
    assert isinstance(loaded, ReferencePolicy)
    ours, theirs = dict(tiny_policy.named_parameters()), dict(loaded.named_parameters())
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(theirs[name], ours[name], atol=0, rtol=0)
    np.testing.assert_array_equal(loaded.processor.stats.action_std, tiny_policy.processor.stats.action_std)
    obs = observation(2)
    np.testing.assert_array_equal(loaded.predict(obs).actions, tiny_policy.predict(obs).actions)
    assert loaded.spec == tiny_policy.spec


def test_checkpoint_of_another_architecture_is_refused(tmp_path, tiny_checkpoint):
    other = random_policy(tiny_config(width=32), stats=tiny_stats()).save_pretrained(tmp_path / "wide")
    (tiny_checkpoint / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="shape .* wrong architecture"):
        load_policy(tiny_checkpoint)


def test_checkpoint_with_wrong_action_dimension_is_refused(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["action_dim"] = 7
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="action_dim=7"):
        load_policy(tiny_checkpoint)
    tensors = load_file(tiny_checkpoint / "model.safetensors")
    tensors["action_out_proj.weight"] = tensors["action_out_proj.weight"][:7].contiguous()
    tensors["action_out_proj.bias"] = tensors["action_out_proj.bias"][:7].contiguous()
    config["action_dim"] = 8
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    save_file(tensors, tiny_checkpoint / "model.safetensors")
    with pytest.raises(ConfigError, match="action_out_proj.weight"):
        load_policy(tiny_checkpoint)


@pytest.mark.parametrize("name", ["model.safetensors", "normalization.json", "tokenizer.json"])
def test_missing_checkpoint_files_are_named(tiny_checkpoint, name):
    (tiny_checkpoint / name).unlink()
    with pytest.raises(ConfigError, match=name.split(".")[0]):
        load_policy(tiny_checkpoint)


def test_unknown_config_field_is_named(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["widht"] = 3
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="widht"):
        load_policy(tiny_checkpoint)


@pytest.mark.parametrize("kwargs, word", [({"image_size": (15, 16)}, "divisible"), ({"width": 15}, "heads"),
                                          ({"horizon": 0}, "horizon"), ({"noise_scale": 1.5}, "noise_scale")])
def test_bad_config_values_are_refused(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        ReferenceVLAConfig.tiny(**kwargs)


def test_load_merged_swaps_all_weights_and_changes_output(tiny_policy):
    obs = observation(5)
    before = tiny_policy.predict(obs).actions
    other = random_policy(tiny_config(), seed=9, stats=tiny_stats())
    other.seed = tiny_policy.seed  # same sampling noise, different weights
    tiny_policy.load_merged(other.state_dict())
    for name, tensor in tiny_policy.named_parameters():
        torch.testing.assert_close(tensor, other.state_dict()[name], atol=0, rtol=0)
    after = tiny_policy.predict(obs).actions
    np.testing.assert_array_equal(after, other.predict(obs).actions)
    assert not np.array_equal(before, after)


def test_load_merged_refuses_bad_tensors_and_keeps_serving(tiny_policy):
    obs = observation(6)
    before = tiny_policy.predict(obs).actions
    good = tiny_policy.state_dict()
    bad_shape = dict(good, **{"state_proj.weight": torch.zeros(3, 3)})
    missing = {k: v for k, v in good.items() if k != "state_proj.bias"}
    for tensors, word in ((bad_shape, "state_proj.weight"), (missing, "missing")):
        with pytest.raises(ConfigError, match=word):
            tiny_policy.load_merged(tensors)
        np.testing.assert_array_equal(tiny_policy.predict(obs).actions, before)


def test_concurrent_predict_sees_old_or_new_weights_never_a_mix(tiny_policy):
    """A predict racing load_merged must return exactly the old or exactly the new output."""
    obs = observation(7)
    weights = [tiny_policy.state_dict(), random_policy(tiny_config(), seed=11, stats=tiny_stats()).state_dict()]
    expected = []
    for w in weights:
        tiny_policy.load_merged(w)
        expected.append(tiny_policy.predict(obs).actions)
    stop, outputs = threading.Event(), []

    def serve():
        while not stop.is_set():
            outputs.append(tiny_policy.predict(obs).actions)

    thread = threading.Thread(target=serve)
    thread.start()
    for i in range(40):
        tiny_policy.load_merged(weights[i % 2])
    stop.set()
    thread.join()
    assert outputs
    assert all(any(np.array_equal(out, e) for e in expected) for out in outputs)


def test_outputs_match_the_golden_file():
    """Issue 13: the embedded checkpoints' chunks for fixed observations and seed, as committed in
    test/data/reference_vla_golden.json; a numeric change in the model or its preprocessing fails here.
    Regenerate with `.venv/bin/python test/policy/golden.py` when the change is intended."""
    from golden import GOLDEN, compute

    expected = json.loads(GOLDEN.read_text())["chunks"]
    actual = compute()
    assert actual.keys() == expected.keys()
    for checkpoint, chunks in expected.items():
        for name, chunk in chunks.items():
            np.testing.assert_allclose(actual[checkpoint][name], chunk, atol=1e-4, err_msg=f"{checkpoint} / {name}")
