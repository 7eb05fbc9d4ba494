"""`retain-merge` on openpi checkpoints: orbax params directories made with orbax itself, merged, read back with orbax.

Runs in .venv-openpi (`make test-openpi`); elsewhere it skips itself (no orbax).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ocp = pytest.importorskip("orbax.checkpoint")
ml_dtypes = pytest.importorskip("ml_dtypes")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "merge"))
from test_merge_maths import assert_close_to_reference  # noqa: E402

from retain_ros.merge.cli import main as retain_merge  # noqa: E402

BF16 = ml_dtypes.bfloat16


def openpi_tree(seed: int, layers: int = 2) -> dict:
    """A pi0-shaped params tree at toy size: SigLIP, Gemma (shared names) and the action expert (suffix _1)."""
    rng = np.random.default_rng(seed)

    def w(*shape, dtype=np.float32):
        return rng.normal(0, 0.05, shape).astype(dtype)

    layers_tree = {"attn": {"q_einsum": {"w": w(layers, 2, 16, 4, dtype=BF16)},
                            "q_einsum_1": {"w": w(layers, 2, 8, 4, dtype=BF16)}},
                   "mlp": {"gating_einsum": w(layers, 2, 16, 32)}, "mlp_1": {"gating_einsum": w(layers, 2, 8, 16)},
                   "pre_attention_norm": {"scale": w(layers, 16)}, "pre_attention_norm_1": {"scale": w(layers, 8)}}
    llm = {"embedder": {"input_embedding": w(32, 16, dtype=BF16)}, "layers": layers_tree,
           "final_norm": {"scale": w(16)}, "final_norm_1": {"scale": w(8)}}
    img = {"embedding": {"kernel": w(4, 4, 3, 8), "bias": w(8)}, "head": {"kernel": w(8, 16), "bias": w(16)}}
    return {"PaliGemma": {"img": img, "llm": llm}, "state_proj": {"kernel": w(8, 8), "bias": w(8)},
            "action_out_proj": {"kernel": w(8, 8), "bias": w(8)}}


def nnx(tree: dict) -> dict:
    """The tree as openpi's training checkpoints store it (nnx.State: every leaf under 'value')."""
    return {k: nnx(v) for k, v in tree.items()} if isinstance(tree, dict) else {"value": tree}


def save(path: Path, tree: dict) -> Path:
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(path, args=ocp.args.PyTreeSave({"params": tree}))
    return path


def restore(path: Path) -> dict:
    with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(path)["params"]


def flat(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = np.asarray(value)
    return out


def group_of(name: str) -> str:
    """openpi's grouping, by hand: SigLIP = vision, llm modules suffixed _1 and robot projections = action."""
    if "/img/" in name:
        return "vision"
    if "_1/" in name or name.startswith(("state_proj", "action_")):
        return "action"
    return "language"


def as_tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype == BF16:
        return torch.from_numpy(array.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(array))


def check_merge(out_params: Path, base: dict, ft: dict, alphas: dict[str, float], strip_value: bool) -> None:
    merged = flat(restore(out_params))
    if strip_value:
        assert all(k.endswith("/value") for k in merged)
        merged = {k[: -len("/value")]: v for k, v in merged.items()}
    base_flat, ft_flat = flat(base), flat(ft)
    assert set(merged) == set(base_flat)
    for name, x0 in base_flat.items():
        a = alphas[group_of(name)]
        assert merged[name].dtype == x0.dtype, name
        t0, t1 = as_tensor(x0).double(), as_tensor(ft_flat[name]).double()
        exact, size = (1 - a) * t0 + a * t1, (1 - a) * t0.abs() + a * t1.abs()
        assert_close_to_reference(as_tensor(merged[name]), exact, size, name)


def test_a_params_pair_merges_per_group_and_reads_back_with_orbax(tmp_path, capsys):
    base, ft = openpi_tree(0), openpi_tree(1)
    save(tmp_path / "base" / "params", base)
    save(tmp_path / "ft" / "params", ft)
    out = tmp_path / "merged"
    argv = [str(tmp_path / "base" / "params"), str(tmp_path / "ft" / "params"), "--alpha", "0.3",
            "--group-alpha", "language=0.8", "--out", str(out)]
    assert retain_merge(argv) == 0, capsys.readouterr().err
    assert "pi0_openpi" in capsys.readouterr().out  # detected from the names
    check_merge(out, base, ft, {"vision": 0.3, "language": 0.8, "action": 0.3}, strip_value=False)
    record = json.loads((out / "retain_merge.json").read_text())
    assert record["alphas"]["language"] == [0.8] and record["alphas"]["vision"] == [0.3]
    assert len(record["inputs"]) == 2 and all(len(f["sha256"]) == 64 for i in record["inputs"] for f in i["files"])
    # alpha 0 and 1 give the parents back bit for bit
    for alpha, parent in ((0, base), (1, ft)):
        argv = [str(tmp_path / "base" / "params"), str(tmp_path / "ft" / "params"), "--alpha", str(alpha),
                "--out", str(tmp_path / f"a{alpha}")]
        assert retain_merge(argv) == 0
        got, want = flat(restore(tmp_path / f"a{alpha}")), flat(parent)
        assert all(np.array_equal(got[k].view(np.uint8), want[k].view(np.uint8)) for k in want)


def test_a_training_step_directory_keeps_its_layout_and_assets(tmp_path, capsys):
    """openpi's training checkpoints: step/params (nnx.State leaves under 'value') beside step/assets."""
    base, ft = openpi_tree(2), openpi_tree(3)
    for name, tree in (("base", base), ("ft", ft)):
        save(tmp_path / name / "params", nnx(tree))
        (tmp_path / name / "assets" / "droid").mkdir(parents=True)
        (tmp_path / name / "assets" / "droid" / "norm_stats.json").write_text(json.dumps({"who": name}))
        (tmp_path / name / "train_state").mkdir()
    out = tmp_path / "merged_step"
    assert retain_merge([str(tmp_path / "base"), str(tmp_path / "ft"), "--alpha", "0.6", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    check_merge(out / "params", base, ft, {"vision": 0.6, "language": 0.6, "action": 0.6}, strip_value=True)
    assert json.loads((out / "assets" / "droid" / "norm_stats.json").read_text()) == {"who": "base"}
    assert not (out / "train_state").exists() and (out / "retain_merge.json").is_file()


def test_mismatched_or_broken_openpi_inputs_are_refused_with_one_line(tmp_path, capsys):
    save(tmp_path / "base", openpi_tree(0))
    save(tmp_path / "bigger", openpi_tree(1, layers=3))
    assert retain_merge([str(tmp_path / "base"), str(tmp_path / "bigger"), "--alpha", "0.5",
                         "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "shape" in err and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
    save(tmp_path / "corrupt", openpi_tree(1))
    for f in (tmp_path / "corrupt").rglob("*"):
        if f.is_file() and "ocdbt" in str(f.relative_to(tmp_path / "corrupt")) and f.stat().st_size > 100:
            f.write_bytes(b"\0" * f.stat().st_size)
    assert retain_merge([str(tmp_path / "base"), str(tmp_path / "corrupt"), "--alpha", "0.5",
                         "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot read the openpi params directory" in err and len(err.splitlines()) == 1
