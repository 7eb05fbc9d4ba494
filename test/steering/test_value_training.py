"""`retain-train value` on recorded rollouts: the loss falls, the checkpoint loads and ranks, bad data is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from steering_fixtures import write_rollouts

from retain_ros.errors import ConfigError
from retain_ros.steering.rollouts import load_rollout
from retain_ros.steering.training import rank_auc
from retain_ros.steering.value_data import load_value_data
from retain_ros.steering.value_function import ValueFunction
from retain_ros.train.cli import main as train_main

SMALL = '{"image_size": [16, 16], "channels": [4, 4], "feature_width": 16, "text_width": 8, "hidden": [32, 32]}'


def test_rollouts_round_trip_with_returns(tmp_path):
    write_rollouts(tmp_path / "r", episodes=4, decisions=3)
    files = sorted((tmp_path / "r").glob("*.npz"))
    assert len(files) == 4
    ep = load_rollout(files[0])
    assert ep.candidates.shape == (3, 4, 10, 8) and ep.num_decisions == 3 and ep.noise_scale == 0.5
    assert np.array_equal(ep.executed, ep.candidates[np.arange(3), ep.chosen])
    np.testing.assert_allclose(ep.returns(0.9), [0.81, 0.9, 1.0] if ep.success else [0, 0, 0])
    with pytest.raises(ConfigError, match="not a rollout file"):
        np.savez(tmp_path / "other.npz", x=np.zeros(2))
        load_rollout(tmp_path / "other.npz")


def test_value_training_lowers_its_loss_and_learns_what_decides_success(tmp_path, capsys):
    write_rollouts(tmp_path / "r", episodes=40, decisions=4)
    out = tmp_path / "value"
    code = train_main(["value", "--data", str(tmp_path / "r"), "--out", str(out), "--steps", "300", "--batch-size",
                       "32", "--held-out", "0.3", "--executed-steps", "4", "-q", "--model", SMALL])
    assert code == 0
    training = json.loads((out / "training.json").read_text())
    assert training["final_loss"] < training["first_loss"]
    held = training["held_out"]
    assert held["episodes"] > 0 and held["auc_success"] > 0.75  # success depends on the executed chunk alone
    assert "held out:" in capsys.readouterr().out
    value = ValueFunction.from_pretrained(out)
    assert value.config.sample_noise_scale == 0.5 and value.config.executed_steps == 4
    # the learnt Q prefers a chunk whose joint 1 moves up (what made the fixture's episodes succeed)
    ep = load_rollout(sorted((tmp_path / "r").glob("*.npz"))[0])
    from retain_ros.policy.interface import Observation
    obs = Observation({c: ep.images[c][0] for c in ep.images}, ep.joint_positions[0], ep.gripper_position[0],
                      ep.instruction)
    chunks = np.zeros((2, 10, 8), np.float32)
    chunks[0, :, 0], chunks[1, :, 0] = 0.5, -0.5
    q = value.score(obs, chunks)
    assert q[0] > q[1]
    # V-GPS's own recipe (bootstrapped targets over the next decision's samples, the Cal-QL penalty) runs too
    for target in ("max", "executed"):
        assert train_main(["value", "--data", str(tmp_path / "r"), "--out", str(tmp_path / target), "--steps", "20",
                           "--batch-size", "8", "--executed-steps", "4", "--target", target, "--cql-alpha", "5",
                           "-q", "--model", SMALL]) == 0
        assert json.loads((tmp_path / target / "training.json").read_text())["config"]["target"] == target


def test_value_data_refuses_what_cannot_train(tmp_path):
    write_rollouts(tmp_path / "a", episodes=4, samples=4)
    write_rollouts(tmp_path / "b", episodes=4, samples=3, seed=1)
    with pytest.raises(ConfigError, match="3 samples per decision, earlier rollouts 4"):
        load_value_data([tmp_path / "a", tmp_path / "b"], ("exterior", "wrist"), (16, 16), 4, 0.98)
    write_rollouts(tmp_path / "c", episodes=4, noise_scale=1.0, seed=2)
    with pytest.raises(ConfigError, match="noise scale 1.0, earlier rollouts at 0.5"):
        load_value_data([tmp_path / "a", tmp_path / "c"], ("exterior", "wrist"), (16, 16), 4, 0.98)
    with pytest.raises(ConfigError, match="cameras"):
        load_value_data([tmp_path / "a"], ("front",), (16, 16), 4, 0.98)
    with pytest.raises(ConfigError, match="holds no rollout files"):
        load_value_data([tmp_path / "empty"], ("exterior",), (16, 16), 4, 0.98)
    for f in (tmp_path / "a").glob("*.npz"):  # keep the failures only
        if bool(np.load(f)["success"]):
            f.unlink()
    with pytest.raises(ConfigError, match="all failures"):
        load_value_data([tmp_path / "a"], ("exterior", "wrist"), (16, 16), 4, 0.98, held_out=0.0)
    assert train_main(["value", "--data", str(tmp_path / "a"), "--out", str(tmp_path / "v"), "--lr", "-1"]) == 2


def test_rank_auc():
    assert rank_auc(np.array([2.0, 3.0]), np.array([1.0])) == 1.0
    assert rank_auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert np.isnan(rank_auc(np.array([]), np.array([1.0])))
