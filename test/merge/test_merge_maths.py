"""Merged weights against an independent float64 reference, in every dtype, layout, mode and alpha pattern."""

from __future__ import annotations

import subprocess
import sys

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from retain_ros.merge.maths import AlphaSpec, fingerprint_tensors
from retain_ros.merge.plan import plan_merge
from retain_ros.merge.resident import ResidentMerger
from retain_ros.merge.streaming import merge_to_disk


def group_of(name: str) -> str:
    """The pi0 grouping, re-derived by hand for the reference (independent of the preset's regexes)."""
    if "vision_tower" in name or "multi_modal_projector" in name:
        return "vision"
    if "gemma_expert" in name or name.startswith("model.") and "paligemma" not in name:
        return "action"
    return "language"


def load_all(path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with the safetensors library / torch (not with the code under test)."""
    path = str(path)
    if path.endswith(".pt"):
        return torch.load(path, weights_only=True)
    if path.endswith(".safetensors"):
        return load_file(path)
    state = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


def reference(base, finetuned, alphas_of_group, mode):
    """float64 RETAIN, stepwise Eq. 4 (sequential) or theta_0 + sum a_i (theta_i - theta_0).

    Returns:
        name -> (exact value, magnitude): the magnitude sum_k |c_k| |x_k| bounds the rounding of an fp32 computation.
    """
    out = {}
    for name, x0 in base.items():
        alphas = alphas_of_group[group_of(name)]
        theta, size = x0.double(), x0.double().abs()
        if mode == "sequential":
            for a, ft in zip(alphas, finetuned):
                theta = (1 - a) * theta + a * ft[name].double()
                size = (1 - a) * size + a * ft[name].double().abs()
        else:
            for a, ft in zip(alphas, finetuned):
                theta = theta + a * (ft[name].double() - x0.double())
                size = size + a * (ft[name].double().abs() + x0.double().abs())
        out[name] = (theta, size)
    return out


MANTISSA_BITS = {torch.float32: 23, torch.bfloat16: 7, torch.float16: 10, torch.float64: 52}


def assert_close_to_reference(ours: torch.Tensor, exact: torch.Tensor, size: torch.Tensor, name: str) -> None:
    """|ours - exact| <= one ulp of the result in its dtype + 8 fp32 roundings of the inputs' magnitude."""
    smallest_normal = torch.finfo(ours.dtype).tiny  # below it (subnormals) the ulp stays at its value there
    exponent = torch.floor(torch.log2(exact.abs().clamp_min(smallest_normal)))
    ulp = torch.pow(2.0, exponent - MANTISSA_BITS[ours.dtype])
    bound = ulp + 8 * 2.0 ** -24 * size
    error = (ours.double() - exact).abs()
    worst = float((error - bound).max())
    assert worst <= 0, f"{name}: error exceeds the fp32 bound by {worst:.3g}"


def merge(base, finetuned, spec, out, mode="sequential"):
    plan = plan_merge(base, finetuned, spec, groups="pi0", mode=mode)
    try:
        return merge_to_disk(plan, out)
    finally:
        plan.close()


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16", "mixed"])
@pytest.mark.parametrize("layout", ["directory", "sharded"])
@pytest.mark.parametrize("num_finetuned,mode", [(1, "sequential"), (2, "sequential"), (3, "task-arithmetic")])
def test_merge_matches_float64_reference(checkpoints, tmp_path, dtype, layout, num_finetuned, mode):
    base, finetuned = checkpoints.make(dtype, layout, num_finetuned)
    spec = AlphaSpec((0.3, 0.6, 0.2)[:num_finetuned] if num_finetuned > 1 else (0.37,),
                     {"language": (0.25,) * num_finetuned, "vision": (0.9,) * num_finetuned})
    merge(base, finetuned, spec, tmp_path / "out", mode)
    ours = load_all(tmp_path / "out")
    alphas = {g: spec.group_alpha.get(g, spec.alpha * (num_finetuned if len(spec.alpha) == 1 else 1))
              for g in ("vision", "language", "action")}
    ref = reference(load_all(base), [load_all(f) for f in finetuned], alphas, mode)
    base_state = load_all(base)
    assert set(ours) == set(ref)
    for name, value in ours.items():
        assert value.dtype == base_state[name].dtype, name  # each tensor keeps its own dtype
        assert value.shape == base_state[name].shape
        assert_close_to_reference(value, *ref[name], name)


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_alpha_zero_and_one_reproduce_parents_bit_for_bit(checkpoints, tmp_path, dtype):
    base, (ft,) = checkpoints.make(dtype, "sharded")
    merge(base, [ft], AlphaSpec.uniform(0.0), tmp_path / "a0")
    merge(base, [ft], AlphaSpec.uniform(1.0), tmp_path / "a1")
    for out, parent in (("a0", base), ("a1", ft)):
        for file in sorted(parent.glob("*.safetensors")):
            ours, theirs = load_file(str(tmp_path / out / file.name)), load_file(str(file))
            for name in theirs:
                assert torch.equal(ours[name].view(torch.uint8), theirs[name].view(torch.uint8)), name


def test_per_group_identity_keeps_other_groups_exact(checkpoints, tmp_path):
    """Modality-specific merge: vision and action at 1 are the finetuned bits; only language is interpolated."""
    base, (ft,) = checkpoints.make("mixed")
    merge(base, [ft], AlphaSpec.uniform(1.0, language=0.5), tmp_path / "out")
    ours, ft_state, base_state = load_all(tmp_path / "out"), load_all(ft), load_all(base)
    for name, value in ours.items():
        if group_of(name) == "language":
            a, b = base_state[name].double(), ft_state[name].double()
            assert_close_to_reference(value, 0.5 * a + 0.5 * b, 0.5 * a.abs() + 0.5 * b.abs(), name)
        else:
            assert torch.equal(value, ft_state[name]), name


@pytest.mark.parametrize("num_finetuned", [1, 2])
def test_resident_merge_equals_disk_merge_bitwise(checkpoints, tmp_path, num_finetuned):
    base, finetuned = checkpoints.make("mixed", "directory", num_finetuned)
    merger = ResidentMerger.from_checkpoints(base, finetuned, groups="pi0")
    buffers = merger.allocate()
    for alpha in (0.0, 0.25, 0.7, 1.0):
        merge(base, finetuned, AlphaSpec.uniform(alpha, language=alpha / 2), tmp_path / f"out{alpha}")
        weights = merger.merge({"default": alpha, "language": alpha / 2}, out=buffers)
        disk = load_all(tmp_path / f"out{alpha}")
        assert set(weights.tensors) == set(disk)
        for name, value in disk.items():
            assert torch.equal(weights.tensors[name].view(torch.uint8), value.view(torch.uint8)), (alpha, name)
        assert weights.fingerprint() == fingerprint_tensors(disk)


def test_resident_merge_fingerprint_changes_with_alpha_and_buffers_are_reusable(checkpoints):
    base, finetuned = checkpoints.make("bf16")
    merger = ResidentMerger.from_checkpoints(base, finetuned)
    first = merger.merge(0.25)
    second = merger.merge(0.75, out=merger.allocate())
    assert first.fingerprint() != second.fingerprint()
    assert merger.merge(0.25).fingerprint() == first.fingerprint()
    assert first.alphas["action"] == (0.25,)
    # the serving weights are not touched by a merge into other buffers
    snapshot = {n: t.clone() for n, t in first.tensors.items()}
    merger.merge(0.9, out=second._flats)
    assert all(torch.equal(snapshot[n], t) for n, t in first.tensors.items())


def test_bf16_lerp_rounds_once_like_the_fp32_upcast():
    """The disk and resident merges rely on torch.lerp on bf16/fp16 computing in fp32 and rounding once."""
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16):
        a, b = (torch.randn(100_000, generator=gen).to(dtype) for _ in range(2))
        for w in (0.1, 0.37, 0.5, 0.73, 0.99):
            assert torch.equal(torch.lerp(a, b, w), torch.lerp(a.float(), b.float(), w).to(dtype))


def test_merge_cli_end_to_end(checkpoints, tmp_path):
    base, (ft,) = checkpoints.make("mixed", "sharded")
    out = tmp_path / "merged"
    run = subprocess.run([sys.executable, "-m", "retain_ros.merge.cli", str(base), str(ft), "--alpha", "0.5",
                          "--group-alpha", "language=0.25", "--out", str(out), "-q"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "merged 2 checkpoints" in run.stdout and "language" in run.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in base.iterdir()) + ["retain_merge.json"]
    inspect = subprocess.run([sys.executable, "-m", "retain_ros.merge.cli", "--inspect", str(out)],
                             capture_output=True, text=True)
    assert inspect.returncode == 0 and "alpha 0.25" in inspect.stdout and str(ft.resolve()) in inspect.stdout


def test_parallel_and_serial_fingerprints_agree(monkeypatch):
    import retain_ros.merge.maths as maths

    gen = torch.Generator().manual_seed(0)
    named = {f"layer{i}.weight": torch.randn(64, 33, generator=gen).to(dtype) for i, dtype in
             enumerate((torch.float32, torch.bfloat16, torch.float16))}
    serial = fingerprint_tensors(named)
    monkeypatch.setattr(maths, "_PARALLEL_HASH_BYTES", 0)
    assert fingerprint_tensors(named) == serial
    named["layer1.weight"] = named["layer1.weight"].clone()
    named["layer1.weight"][5, 7] += 1
    assert fingerprint_tensors(named) != serial
