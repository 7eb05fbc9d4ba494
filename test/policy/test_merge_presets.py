"""The reference VLA and the merge engine: the group preset covers every parameter; merged checkpoints load and run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_helpers import observation, tiny_config, tiny_stats

from retain_ros.merge.cli import main as retain_merge
from retain_ros.merge.maths import AlphaSpec
from retain_ros.merge.plan import plan_merge
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy import load_policy
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.reference_policy import random_policy

GROUPS = ("vision", "language", "action")


@pytest.fixture
def base_and_ft(tmp_path):
    base = random_policy(tiny_config(), seed=0, stats=tiny_stats()).save_pretrained(tmp_path / "base")
    ft = random_policy(tiny_config(), seed=1, stats=tiny_stats()).save_pretrained(tmp_path / "ft")
    return base, ft


@pytest.mark.parametrize("config", [tiny_config(), ReferenceVLAConfig()], ids=["tiny", "embedded-size"])
def test_reference_preset_covers_every_parameter(tmp_path, config):
    base = random_policy(config, stats=tiny_stats()).save_pretrained(tmp_path / "base")
    ft = random_policy(config, seed=1, stats=tiny_stats()).save_pretrained(tmp_path / "ft")
    plan = plan_merge(base, [ft], AlphaSpec.uniform(0.5), groups="reference")
    try:
        assert not plan.assignment.unmatched
        stats = plan.group_stats()
        for group in GROUPS:
            assert stats[group]["tensors"] > 0, group
        names = plan.assignment.group_of
        assert names["language_backbone.embed_tokens.weight"] == "language"
        assert names["vision_encoder.projector.weight"] == "vision"
        for proj in ("state_proj", "action_in_proj", "action_out_proj", "action_time_mlp_in", "action_time_mlp_out"):
            assert names[f"{proj}.weight"] == "action"
    finally:
        plan.close()


def test_auto_preset_detection_picks_reference(base_and_ft):
    plan = plan_merge(base_and_ft[0], [base_and_ft[1]], AlphaSpec.uniform(0.5))
    try:
        assert plan.preset.name == "reference"
    finally:
        plan.close()


def test_retain_merge_output_loads_runs_and_is_the_interpolation(tmp_path, base_and_ft, capsys):
    base, ft = base_and_ft
    out = tmp_path / "merged"
    assert retain_merge([str(base), str(ft), "--alpha", "0.25", "--group-alpha", "language=0.75", "--out", str(out),
                         "-q"]) == 0
    merged = load_policy(out)
    a, b = dict(load_policy(base).named_parameters()), dict(load_policy(ft).named_parameters())
    for name, tensor in merged.named_parameters():
        alpha = 0.75 if name.startswith("language_backbone.") else 0.25
        torch.testing.assert_close(tensor, torch.lerp(a[name], b[name], alpha))
    chunk = merged.predict(observation())
    assert chunk.actions.shape == (4, 8) and np.all(np.isfinite(chunk.actions))


def test_resident_merge_swapped_in_equals_the_disk_merge(tmp_path, base_and_ft):
    base, ft = base_and_ft
    out = tmp_path / "merged"
    assert retain_merge([str(base), str(ft), "--alpha", "0.5", "--out", str(out), "-q"]) == 0
    from_disk = load_policy(out)
    serving = load_policy(base)
    merger = ResidentMerger.from_checkpoints(base, [ft], groups="reference")
    serving.load_merged(merger.merge(0.5).tensors)
    disk = dict(from_disk.named_parameters())
    for name, tensor in serving.named_parameters():
        torch.testing.assert_close(tensor, disk[name], atol=0, rtol=0)
    obs = observation(3)
    np.testing.assert_array_equal(serving.predict(obs).actions, from_disk.predict(obs).actions)
