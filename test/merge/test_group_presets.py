"""Shipped group presets against the parameter names of the real architectures (lists in test/data/param_names/)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from retain_ros.errors import ConfigError
from retain_ros.merge.groups import builtin_preset_names, load_preset, resolve_preset
from retain_ros.merge.maths import AlphaSpec
from retain_ros.merge.plan import plan_merge

NAMES = Path(__file__).resolve().parent.parent / "data" / "param_names"
DTYPES = {"bf16": torch.bfloat16, "f32": torch.float32, "f16": torch.float16}

# Per-group tensor counts, derived by hand from the architectures (rationale in test/data/param_names/EXPECTED.md).
EXPECTED = {
    "pi0_openpi": {"vision": 23, "language": 9, "action": 18},
    "pi0": {"vision": 39, "language": 21, "action": 30, "normalization": 6},
    "pi05": {"vision": 39, "language": 21, "action": 33, "normalization": 0},
    "smolvla": {"vision": 38, "language": 21, "action": 29, "normalization": 6},
}


def read_names(preset: str) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    rows = []
    for line in (NAMES / f"{preset}.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, shape, dtype = line.split("\t")
            rows.append((name, tuple(int(d) for d in shape.split("x")) if shape else (), DTYPES[dtype]))
    return rows


def write_tiny_checkpoint(path: Path, rows, seed: int) -> Path:
    """A real safetensors file with these names, dtypes and (shrunk) shapes."""
    gen = torch.Generator().manual_seed(seed)
    save_file({n: torch.randn(math.prod(s) if s else 1, generator=gen).reshape(s).to(d) for n, s, d in rows},
              str(path))
    return path


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_every_real_parameter_lands_in_its_intended_group(preset, tmp_path):
    rows = read_names(preset)
    base = write_tiny_checkpoint(tmp_path / "base.safetensors", rows, 0)
    ft = write_tiny_checkpoint(tmp_path / "ft.safetensors", rows, 1)
    plan = plan_merge(base, [ft], AlphaSpec.uniform(0.5), groups=preset, require_complete=False)
    plan.close()
    assert plan.assignment.unmatched == []
    counts = {g: s["tensors"] for g, s in plan.group_stats().items()}
    assert counts == EXPECTED[preset]


def test_openpi_expert_weights_beat_the_language_catch_all_by_rule_order():
    preset = load_preset("pi0_openpi")
    assert preset.group_of("PaliGemma/llm/layers/attn/q_einsum_1/w") == "action"
    assert preset.group_of("PaliGemma/llm/layers/attn/q_einsum/w") == "language"
    assert preset.group_of("PaliGemma/llm/layers/mlp_1/gating_einsum") == "action"
    assert preset.group_of("PaliGemma/img/Transformer/encoderblock/LayerNorm_1/scale") == "vision"
    assert preset.group_of("action_time_mlp_in/kernel") == "action"


def test_pi05_time_mlp_is_in_the_action_expert():
    preset = load_preset("pi05")
    assert preset.group_of("model.time_mlp_in.weight") == "action"
    assert preset.group_of("model.time_mlp_out.bias") == "action"


def test_reference_preset_covers_the_reference_vla_prefixes():
    preset = load_preset("reference")
    assert preset.group_of("vision_encoder.blocks.0.attn.qkv.weight") == "vision"
    assert preset.group_of("model.language_backbone.layers.1.mlp.weight") == "language"
    assert preset.group_of("action_expert.layers.0.norm.weight") == "action"
    assert preset.group_of("action_time_mlp_out.weight") == "action"
    assert preset.group_of("something_else.weight") is None


def test_every_shipped_preset_parses_and_first_match_wins(tmp_path):
    for name in builtin_preset_names():
        preset = load_preset(name)
        assert preset.groups, name
    user = tmp_path / "mine.yaml"
    user.write_text("groups: [a, b]\nrules:\n  - [a, 'x']\n  - [b, 'x|y']\ndefault: b\n")
    preset = load_preset(str(user))
    assert (preset.group_of("x.w"), preset.group_of("y.w"), preset.group_of("z.w")) == ("a", "b", "b")


@pytest.mark.parametrize("text,problem", [
    ("rules: [[a]]", "each rule is \\[group, regex\\]"),
    ("rules:\n  - [a, '(unclosed']", "invalid regex"),
    ("groups: [a]", "expected a mapping with a `rules:` list"),
    ("rules: [\n", "invalid YAML"),
])
def test_malformed_user_preset_is_explained(tmp_path, text, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_preset(str(path))


def test_auto_picks_the_preset_that_covers_every_name():
    rows = read_names("smolvla")
    assert resolve_preset("auto", [n for n, _, _ in rows]).name == "smolvla"
    assert resolve_preset("auto", ["a.weight", "b.weight"]).name == "all"
    assert re.fullmatch(r"pi0|pi05", resolve_preset("auto", [n for n, _, _ in read_names("pi0")]).name)
