"""LeRobot normalisation statistics read from the files: the action type they say, and retain-merge refusing base and
finetuned checkpoints whose statistics differ unless `--stats` chooses, with the choice carried and recorded.

The checkpoints are directories in LeRobot's saved layout (processor JSON naming safetensors state files), written
here with numpy; test/lerobot_backend checks the same with LeRobot's own saved checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy
from safetensors.torch import save_file

from retain_ros.errors import ConfigError
from retain_ros.merge.statistics import action_kind_evidence, check_action_kind, read_stats, stats_difference

VELOCITY = (np.full(8, -1.0), np.full(8, 1.0))  # DROID-normalised joint velocities and gripper
POSITION = (np.array([-2.0, -1.2, -2.0, -2.9, -2.0, 0.9, -2.5, 0.0]),  # FR3 joint angles: j4 < 0 < j6
            np.array([2.0, 1.2, 2.0, -0.5, 2.0, 3.6, 2.5, 1.0]))


def stats_of(span: tuple[np.ndarray, np.ndarray], shift: float = 0.0) -> dict[str, np.ndarray]:
    lo, hi = (np.asarray(a, np.float32) + shift for a in span)
    return {"action.min": lo, "action.max": hi, "action.q01": lo * 0.9, "action.q99": hi * 0.9,
            "action.mean": (lo + hi) / 2, "action.std": (hi - lo) / 4,
            "observation.state.mean": np.zeros(8, np.float32), "observation.state.std": np.ones(8, np.float32)}


def lerobot_layout(path: Path, stats: dict[str, np.ndarray], seed: int) -> Path:
    """A checkpoint directory as LeRobot saves one: config, weights, two processors and their statistics files."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"type": "pi0"}))
    generator = torch.Generator().manual_seed(seed)
    save_file({"model.w": torch.randn(4, 4, generator=generator)}, str(path / "model.safetensors"))
    for name, state_file in (("policy_preprocessor", "policy_preprocessor_step_3_normalizer_processor"),
                             ("policy_postprocessor", "policy_postprocessor_step_0_unnormalizer_processor")):
        steps = [{"registry_name": "device_processor", "config": {"device": "cpu"}},
                 {"registry_name": "normalizer_processor", "config": {}, "state_file": f"{state_file}.safetensors"}]
        (path / f"{name}.json").write_text(json.dumps({"name": name, "steps": steps}))
        save_numpy(stats, str(path / f"{state_file}.safetensors"))
    return path


def test_the_statistics_say_whether_actions_are_joint_positions_or_velocities():
    assert action_kind_evidence(stats_of(VELOCITY))[0] == "joint velocities"
    says, evidence = action_kind_evidence(stats_of(POSITION))
    assert says == "joint positions" and "j4 [-2.61, -0.45]" in evidence  # the quantiles, where saved
    assert action_kind_evidence(stats_of(VELOCITY, shift=2.0))[0] is None  # neither: nothing is claimed
    assert action_kind_evidence({})[0] is None


def test_an_action_type_the_statistics_contradict_is_refused_naming_both():
    with pytest.raises(ConfigError) as refused:
        check_action_kind(stats_of(POSITION), "droid_joint_velocity", "pi05 checkpoint /ckpt")
    text = str(refused.value)
    assert text.startswith("pi05 checkpoint /ckpt: its action statistics look like joint positions, but "
                           "lerobot_action is 'droid_joint_velocity'")
    assert "Fix: set lerobot_action: joint_position" in text
    with pytest.raises(ConfigError, match="look like joint velocities, but lerobot_action is 'joint_position'"):
        check_action_kind(stats_of(VELOCITY), "joint_position", "ckpt")
    check_action_kind(stats_of(POSITION), "joint_position", "ckpt")
    check_action_kind(stats_of(VELOCITY), "joint_velocity", "ckpt")


def test_statistics_are_read_from_the_files_the_processors_name(tmp_path):
    ckpt = lerobot_layout(tmp_path / "base", stats_of(VELOCITY), seed=0)
    stats = read_stats(ckpt)
    np.testing.assert_array_equal(stats["action.q99"], stats_of(VELOCITY)["action.q99"])
    (ckpt / "policy_postprocessor_step_0_unnormalizer_processor.safetensors").unlink()
    with pytest.raises(ConfigError, match="policy_postprocessor_step_0_unnormalizer_processor.safetensors, the "
                                          "statistics policy_postprocessor.json names, cannot be read"):
        read_stats(ckpt)
    assert stats_difference(stats_of(VELOCITY), stats_of(VELOCITY)) is None
    difference = stats_difference(stats_of(VELOCITY), stats_of(VELOCITY, 0.5))
    assert difference == "action.mean[0] is 0 in one and 0.5 in the other"


def test_merge_refuses_differing_statistics_unless_chosen_and_records_the_choice(tmp_path, cli):
    base = lerobot_layout(tmp_path / "base", stats_of(VELOCITY), seed=0)
    ft = lerobot_layout(tmp_path / "ft", stats_of(VELOCITY, shift=0.25), seed=1)  # lerobot-train's own statistics
    refused = cli(base, ft, "--alpha", "0.5", "--out", tmp_path / "m", "-q")
    assert refused.returncode != 0 and not (tmp_path / "m").exists()
    assert "normalisation statistics of" in refused.stderr and "differ from the base's" in refused.stderr
    assert "--stats base|finetuned" in refused.stderr and "action.mean[0]" in refused.stderr

    stats_file = "policy_postprocessor_step_0_unnormalizer_processor.safetensors"
    for choice, source in (("finetuned", ft), ("base", base)):
        out = tmp_path / f"m_{choice}"
        assert cli(base, ft, "--alpha", "0.5", "--stats", choice, "--out", out, "-q").returncode == 0
        assert (out / stats_file).read_bytes() == (source / stats_file).read_bytes()
        record = json.loads((out / "retain_merge.json").read_text())["statistics"]
        assert record["choice"] == choice and record["source"] == str(source) and "action.mean[0]" in record["differ"]
        shown = cli("--inspect", out).stdout
        assert f"normalisation statistics: {choice}, from {source}" in shown

    same = lerobot_layout(tmp_path / "ft_same", stats_of(VELOCITY), seed=2)  # openpi-style: the base's statistics
    assert cli(base, same, "--alpha", "0.5", "--out", tmp_path / "m_same", "-q").returncode == 0
    record = json.loads((tmp_path / "m_same" / "retain_merge.json").read_text())["statistics"]
    assert record == {"choice": "shared", "source": str(base), "differ": ""}
    np.testing.assert_array_equal(load_numpy(str(tmp_path / "m_same" / stats_file))["action.max"], VELOCITY[1])
