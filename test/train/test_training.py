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
from retain_ros.train.fit import PHASES, alpha_path_loss, fit_error
from retain_ros.train.loop import BatchSampler, TrainConfig, lr_at, train

TINY = {"image_size": [16, 16], "patch_size": 4, "vision_pool": 2, "vision_width": 16, "vision_layers": 1,
        "width": 16, "layers": 1, "heads": 2, "expert_width": 16, "expert_layers": 1, "horizon": 4,
        "num_flow_steps": 2, "vocab_buckets": 8}


def _pretrain(data, out, steps=5, seed=0, **kwargs):
    cfg = TrainConfig(mode="pretrain", data=(str(data),), out=str(out), steps=steps, batch_size=8, seed=seed,
                      model=dict(TINY), **kwargs)
    return train(cfg, progress=False)


def _fixed_loss(checkpoint, data, samples=64, seed=123, noise_seed=7) -> float:
    policy = load_policy(checkpoint)
    demos = load_demos([data], policy.config)
    batch = BatchSampler(demos, policy, torch.Generator().manual_seed(seed)).draw(samples, augment=False)
    with torch.no_grad():
        return float(policy.model.loss(batch["images"], batch["token_ids"], batch["token_mask"], batch["state"],
                                       batch["actions"], torch.Generator().manual_seed(noise_seed)))


def _fixed_batch_loss(checkpoint, data) -> float:
    return _fixed_loss(checkpoint, data)


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


@pytest.mark.slow
def test_training_on_noise_injected_demos_still_learns(tmp_path, noisy_data):
    """Issue 15: noise injection (DART) must not make the labels unlearnable; a few steps already lower the loss."""
    start = _pretrain(noisy_data, tmp_path / "start", steps=1, lr=1e-9)
    trained = _pretrain(noisy_data, tmp_path / "trained", steps=40, lr=3e-3)
    assert _fixed_batch_loss(trained.out, noisy_data) < 0.8 * _fixed_batch_loss(start.out, noisy_data)
    # and the offline arm error against the clean labels falls with it
    assert fit_error(trained.out, [noisy_data], stride=1).arm_rmse_rad_s < fit_error(start.out, [noisy_data],
                                                                                     stride=1).arm_rmse_rad_s


def test_fit_error_reports_every_phase_and_the_samples_scored(tmp_path, sim_data):
    model = _pretrain(sim_data[0], tmp_path / "m", steps=2).out
    whole = fit_error(model, [sim_data[0]], stride=1)
    sparse = fit_error(model, [sim_data[0]], stride=3)
    n = len(load_demos([sim_data[0]], ReferenceVLAConfig.tiny()))
    assert whole.samples == n and sparse.samples == len(range(0, n, 3)) and whole.episodes == 1
    assert set(whole.by_phase) == set(PHASES) and all(np.isfinite(v) for v in whole.by_phase.values())
    assert 0.0 <= whole.gripper_accuracy <= 1.0 and "rad/s" in whole.line()
    with pytest.raises(ConfigError, match="no successful episodes"):
        fit_error(model, [sim_data[0]], skip_episodes=1)


def test_alpha_path_ends_are_the_base_and_the_finetuned_losses(tmp_path, sim_data):
    pre, target = sim_data
    base = _pretrain(pre, tmp_path / "base", steps=3).out
    ft = train(TrainConfig(mode="finetune", data=(str(target),), init=str(base), out=str(tmp_path / "ft"),
                           steps=5, batch_size=8, lr=3e-3), progress=False).out
    path = alpha_path_loss(base, ft, [target], [0.0, 0.5, 1.0], samples=16)
    assert [a for a, _ in path] == [0.0, 0.5, 1.0]
    assert path[0][1] == pytest.approx(_fixed_loss(base, target, 16, seed=0, noise_seed=1))
    assert path[2][1] == pytest.approx(_fixed_loss(ft, target, 16, seed=0, noise_seed=1))
    assert path[0][1] != path[2][1]


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
    ({"freeze": ("action",)}, "pretrain has none"),
    ({"mode": "finetune", "init": "x", "freeze": ("vision", "language", "action")}, "not all"),
    ({"mode": "finetune", "init": "x", "freeze": ("actions",)}, "give some of vision, language, action"),
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


def test_cli_error_and_path_report_and_plot(tmp_path, sim_data, capsys):
    pre, target = sim_data
    base = _pretrain(pre, tmp_path / "base", steps=2).out
    ft = train(TrainConfig(mode="finetune", data=(str(target),), init=str(base), out=str(tmp_path / "ft"),
                           steps=2, batch_size=8), progress=False).out
    assert retain_train(["error", "--init", str(ft), "--data", str(target), "--stride", "3"]) == 0
    assert "rad/s" in capsys.readouterr().out
    png = tmp_path / "path.png"
    assert retain_train(["path", "--base", str(base), "--finetuned", str(ft), "--data", str(target), str(pre),
                         "--alphas", "0,0.5,1", "--samples", "8", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert text.count("path ") == 2 and text.count("  alpha ") == 6  # one path per data directory
    assert text.count("barrier") == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert retain_train(["error", "--init", str(ft), "--data", str(target), "--stride", "0"]) == 2


def test_a_finetune_with_frozen_groups_moves_only_the_others(tmp_path, sim_data):
    from retain_ros.merge.groups import load_preset

    pre, target = sim_data
    base = _pretrain(pre, tmp_path / "base", steps=2).out
    ft = train(TrainConfig(mode="finetune", data=(str(target),), init=str(base), out=str(tmp_path / "ft"),
                           steps=3, batch_size=8, lr=3e-3, freeze=("action",)), progress=False).out
    preset, before, after = load_preset("reference"), load_policy(base).state_dict(), load_policy(ft).state_dict()
    moved = {preset.group_of(n) for n in before if not torch.equal(before[n], after[n])}
    assert "action" not in moved and {"vision", "language"} <= moved


def test_path_with_held_groups_moves_only_the_others(tmp_path, sim_data, capsys):
    """--hold vision:0,language:0: only the action expert merges, so at alpha 1 the loss is neither end's."""
    pre, target = sim_data
    base = _pretrain(pre, tmp_path / "base", steps=2).out
    ft = train(TrainConfig(mode="finetune", data=(str(target),), init=str(base), out=str(tmp_path / "ft"),
                           steps=3, batch_size=8, lr=3e-3), progress=False).out
    free = dict(alpha_path_loss(base, ft, [target], [0.0, 1.0], samples=16))
    held = dict(alpha_path_loss(base, ft, [target], [0.0, 1.0], samples=16, hold={"vision": 0.0, "language": 0.0}))
    assert held[0.0] == pytest.approx(free[0.0]) and held[1.0] != pytest.approx(free[1.0])
    assert retain_train(["path", "--base", str(base), "--finetuned", str(ft), "--data", str(target), "--alphas",
                         "0,1", "--samples", "8", "--hold", "vision:0,language:0"]) == 0
    assert "(vision held at 0, language held at 0)" in capsys.readouterr().out
    assert retain_train(["path", "--base", str(base), "--finetuned", str(ft), "--data", str(target),
                         "--hold", "vision=0"]) == 2
    assert "GROUP:ALPHA" in capsys.readouterr().err
