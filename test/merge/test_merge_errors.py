"""Every mistake a user can make gets one clear error naming the thing and the fix, and nothing is left behind."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from retain_ros.errors import ConfigError
from retain_ros.merge.checkpoint import Checkpoint
from retain_ros.merge.maths import AlphaSpec
from retain_ros.merge.plan import plan_merge
from retain_ros.merge.streaming import merge_to_disk


def save(path, state):
    save_file(state, str(path))
    return path


def test_shape_mismatch_names_the_key_both_shapes_and_the_files(tmp_path):
    a = save(tmp_path / "a.safetensors", {"w": torch.zeros(4, 3), "b": torch.zeros(3)})
    b = save(tmp_path / "b.safetensors", {"w": torch.zeros(4, 5), "b": torch.zeros(3)})
    with pytest.raises(ConfigError, match=r"'w' has shape \[4, 3\] in .*a.safetensors but \[4, 5\] in .*b.safetensors"):
        plan_merge(a, [b], AlphaSpec.uniform(0.5))


def test_missing_and_extra_keys_are_listed(tmp_path):
    a = save(tmp_path / "a.safetensors", {"w": torch.zeros(2), "only_in_base": torch.zeros(1)})
    b = save(tmp_path / "b.safetensors", {"w": torch.zeros(2), "only_in_ft": torch.zeros(1)})
    with pytest.raises(ConfigError, match="only_in_base.*only_in_ft"):
        plan_merge(a, [b], AlphaSpec.uniform(0.5))


def test_dtype_mismatch_is_refused_unless_cast_is_allowed(tmp_path):
    a = save(tmp_path / "a.safetensors", {"w": torch.ones(8, dtype=torch.bfloat16)})
    b = save(tmp_path / "b.safetensors", {"w": torch.full((8,), 3.0)})
    with pytest.raises(ConfigError, match="'w' is bfloat16 in .* but float32 in .*--allow-dtype-cast"):
        plan_merge(a, [b], AlphaSpec.uniform(0.5))
    plan = plan_merge(a, [b], AlphaSpec.uniform(0.5), allow_dtype_cast=True)
    merge_to_disk(plan, tmp_path / "out")
    plan.close()
    merged = load_file(str(tmp_path / "out" / "model.safetensors"))["w"]
    assert merged.dtype == torch.bfloat16 and torch.all(merged == 2.0)


@pytest.mark.parametrize("alpha", ["1.5", "-0.1", "nan", "abc", "0.5,0.5"])
def test_bad_alpha_is_refused_before_any_work(checkpoints, tmp_path, alpha, cli):
    base, (ft,) = checkpoints.make("fp32")
    run = cli(base, ft, "--alpha", alpha, "--out", tmp_path / "out")
    assert run.returncode == 2
    assert run.stderr.startswith("retain-merge: error:") and "alpha" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_preset_lists_known_ones_and_suggests_the_closest(checkpoints, cli):
    base, (ft,) = checkpoints.make("fp32")
    run = cli(base, ft, "--alpha", "0.5", "--groups", "smolvl", "--dry-run")
    assert run.returncode == 2
    assert "unknown group preset 'smolvl'" in run.stderr and "pi0" in run.stderr
    assert "Did you mean 'smolvla'" in run.stderr


def test_unknown_group_in_group_alpha_lists_the_preset_groups(checkpoints, cli):
    base, (ft,) = checkpoints.make("fp32")
    run = cli(base, ft, "--alpha", "0.5", "--group-alpha", "vison=0.3", "--groups", "pi0", "--dry-run")
    assert run.returncode == 2 and "unknown group 'vison'" in run.stderr and "vision, language, action" in run.stderr


def test_unmatched_names_fail_the_merge_and_are_listed_by_the_dry_run(tmp_path, cli):
    a = save(tmp_path / "a.safetensors", {"model.state_proj.weight": torch.zeros(2), "mystery.weight": torch.zeros(2)})
    b = save(tmp_path / "b.safetensors", {"model.state_proj.weight": torch.ones(2), "mystery.weight": torch.ones(2)})
    run = cli(a, b, "--alpha", "0.5", "--groups", "pi0", "--out", tmp_path / "out")
    assert run.returncode == 2 and "mystery.weight" in run.stderr and "default" in run.stderr
    dry = cli(a, b, "--alpha", "0.5", "--groups", "pi0", "--dry-run")
    assert dry.returncode == 2 and "unmatched:  1 name(s)" in dry.stdout and "mystery.weight" in dry.stdout
    assert not (tmp_path / "out").exists()


def test_existing_output_is_kept_without_force_and_replaced_with_it(checkpoints, tmp_path, cli):
    base, (ft,) = checkpoints.make("fp32")
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    run = cli(base, ft, "--alpha", "0.5", "--out", out, "-q")
    assert run.returncode == 2 and "already exists" in run.stderr and "--force" in run.stderr
    assert (out / "precious.txt").read_text() == "keep me"
    forced = cli(base, ft, "--alpha", "0.5", "--out", out, "-q", "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (out / "precious.txt").exists() and (out / "model.safetensors").is_file()


def test_output_that_is_an_input_is_refused(checkpoints, cli):
    base, (ft,) = checkpoints.make("fp32")
    run = cli(base, ft, "--alpha", "0.5", "--out", ft, "--force")
    assert run.returncode == 2 and "is one of the inputs" in run.stderr
    assert (ft / "model.safetensors").is_file()


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "empty"])
def test_missing_or_corrupt_checkpoints_are_named(checkpoints, tmp_path, damage, cli):
    base, (ft,) = checkpoints.make("fp32")
    weights = ft / "model.safetensors"
    if damage == "missing":
        target = tmp_path / "nope"
    else:
        data = weights.read_bytes()
        weights.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x10\x00" + b"x" * 100,
                             "empty": b""}[damage])
        target = ft
    run = cli(base, target, "--alpha", "0.5", "--out", tmp_path / "out")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert str(target) in run.stderr or str(weights) in run.stderr
    assert not (tmp_path / "out").exists()


def test_directory_without_weights_lists_what_it_found(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"no weights found.*config.json"):
        Checkpoint(tmp_path / "ckpt")


def test_interrupted_merge_leaves_nothing_that_looks_like_a_checkpoint(checkpoints, tmp_path):
    base, (ft,) = checkpoints.make("fp32", "sharded")
    plan = plan_merge(base, [ft], AlphaSpec.uniform(0.5))
    calls = []

    def interrupt(nbytes):
        calls.append(nbytes)
        if len(calls) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merge_to_disk(plan, tmp_path / "out", progress=interrupt, chunk_elements=1024)
    plan.close()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("base", "ft"))) == []


def test_merge_needs_base_and_finetuned_and_out(checkpoints, cli):
    base, (ft,) = checkpoints.make("fp32")
    assert "at least one FINETUNED" in cli(base, "--alpha", "0.5", "--out", "x").stderr
    assert "--out DIR is required" in cli(base, ft, "--alpha", "0.5").stderr
    assert "--alpha is required" in cli(base, ft, "--out", "x").stderr
    assert "GROUP=ALPHA" in cli(base, ft, "--alpha", "0.5", "--group-alpha", "0.3", "--dry-run").stderr
