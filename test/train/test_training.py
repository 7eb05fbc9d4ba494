"""Training the reference VLA on a tiny dataset made with the simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retain_ros.errors import ConfigError
from retain_ros.policy import load_policy
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.train.cli import main as retain_train
from retain_ros.train.data import action_chunks, load_demos
from retain_ros.train.loop import BatchSampler, TrainConfig, lr_at, train

TINY = {"image_size": [16, 16], "patch_size": 4, "vision_pool": 2, "vision_width": 16, "vision_layers": 1,
        "width": 16, "layers": 1, "heads": 2, "expert_width": 16, "expert_layers": 1, "horizon": 4,
        "num_flow_steps": 2, "vocab_buckets": 8}


def _pretrain(data, out, steps=5, seed=0, **kwargs):
    cfg = TrainConfig(mode="pretrain", data=(str(data),), out=str(out), steps=steps, batch_size=8, seed=seed,
                      model=dict(TINY), **kwargs)
    return train(cfg, progress=False)


def _fixed_batch_loss(checkpoint, data) -> float:
    policy = load_policy(checkpoint)
    demos = load_demos([data], policy.config)
    batch = BatchSampler(demos, policy, torch.Generator().manual_seed(123)).draw(64, augment=False)
    with torch.no_grad():
        return float(policy.model.loss(batch["images"], batch["token_ids"], batch["token_mask"], batch["state"],
                                       batch["actions"], torch.Generator().manual_seed(7)))


def test_action_chunks_repeat_the_last_action():
    actions = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    chunks = action_chunks(actions, 4)
    assert chunks.shape == (3, 4, 2)
    np.testing.assert_array_equal(chunks[1], actions[[1, 2, 2, 2]])


def test_demos_are_loaded_at_the_model_size(sim_data):
    demos = load_demos([sim_data[0]], ReferenceVLAConfig.tiny())
    assert demos.images.shape[1:] == (2, 16, 16, 3) and demos.images.dtype == np.uint8
    assert demos.states.shape == (len(demos), 8) and demos.action_chunks.shape == (len(demos), 4, 8)
    assert set(demos.instructions) == {"pick up the red cube"}


@pytest.mark.slow
def test_training_steps_reduce_the_loss(tmp_path, sim_data):
    start = _pretrain(sim_data[0], tmp_path / "start", steps=1, lr=1e-9)
    trained = _pretrain(sim_data[0], tmp_path / "trained", steps=40, lr=3e-3, augment=False)
    assert trained.final_loss < trained.first_loss
    assert _fixed_batch_loss(trained.out, sim_data[0]) < 0.8 * _fixed_batch_loss(start.out, sim_data[0])


def test_same_seed_gives_identical_weights(tmp_path, sim_data):
    a = load_policy(_pretrain(sim_data[0], tmp_path / "a", seed=4).out)
    b = load_policy(_pretrain(sim_data[0], tmp_path / "b", seed=4).out)
    c = load_policy(_pretrain(sim_data[0], tmp_path / "c", seed=5).out)
    wa, wb, wc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    assert not all(torch.equal(wa[n], wc[n]) for n in wa)


def test_finetune_and_cofinetune_keep_the_base_statistics_and_shape(tmp_path, sim_data):
    pre, target = sim_data
    base = _pretrain(pre, tmp_path / "base").out
    ft = train(TrainConfig(mode="finetune", data=(str(target),), init=str(base), out=str(tmp_path / "ft"),
                           steps=3, batch_size=8), progress=False).out
    co = train(TrainConfig(mode="cofinetune", data=(str(target),), pretrain_data=(str(pre),), init=str(base),
                           out=str(tmp_path / "co"), steps=3, batch_size=8, target_fraction=0.25),
               progress=False).out
    base_policy = load_policy(base)
    for path in (ft, co):
        policy = load_policy(path)
        assert policy.config == base_policy.config
        np.testing.assert_array_equal(policy.processor.stats.state_mean, base_policy.processor.stats.state_mean)
        assert not all(torch.equal(policy.state_dict()[n], t) for n, t in base_policy.state_dict().items())


def test_learning_rate_schedule():
    assert lr_at(0, 100, 1.0) == pytest.approx(0.2)
    assert lr_at(5, 100, 1.0) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0) == pytest.approx(0.1, abs=1e-3)


@pytest.mark.parametrize("kwargs, word", [
    ({"mode": "distill"}, "unknown training mode"),
    ({"mode": "finetune"}, "--init"),
    ({"mode": "cofinetune", "init": "x"}, "--pretrain-data"),
    ({"init": "x"}, "fresh model"),
    ({"target_fraction": 1.0}, "target_fraction"),
    ({"steps": 0}, "steps"),
])
def test_bad_training_settings_are_refused(tmp_path, kwargs, word):
    settings = dict(mode="pretrain", data=("d",), out=str(tmp_path / "o"))
    settings.update(kwargs)
    with pytest.raises(ConfigError, match=word):
        TrainConfig(**settings)


def test_cli_pretrain_prints_progress_and_summary(tmp_path, sim_data, capsys):
    out = tmp_path / "cli"
    import json
    assert retain_train(["pretrain", "--data", str(sim_data[0]), "--out", str(out), "--steps", "3",
                         "--batch-size", "4", "--model", json.dumps(TINY), "-q"]) == 0
    text = capsys.readouterr().out
    assert "loss" in text and "checkpoint:" in text and str(out) in text
    assert load_policy(out).config.width == 16


@pytest.mark.parametrize("argv, word", [
    (["finetune", "--data", "nope", "--init", "missing", "--out", "o"], "not found"),
    (["pretrain", "--data", "nope", "--out", "o", "--model", "{"], "--model"),
    (["pretrain", "--data", "nope", "--out", "o"], "index.json"),
])
def test_cli_user_errors_exit_2(tmp_path, monkeypatch, capsys, argv, word):
    monkeypatch.chdir(tmp_path)
    assert retain_train(argv) == 2
    assert word in capsys.readouterr().err


def test_existing_output_is_not_overwritten(tmp_path, sim_data):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep").write_text("x")
    with pytest.raises(ConfigError, match="--overwrite"):
        TrainConfig(mode="pretrain", data=(str(sim_data[0]),), out=str(tmp_path / "o"))
