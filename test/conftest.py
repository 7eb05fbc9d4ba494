"""Shared fixtures: small real checkpoints written to disk with the safetensors library."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from retain_ros.merge.synthetic import Pi0LikeShape, finetuned_copy, pi0_like_layout, random_state, write_checkpoint

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def layout_in(dtype: str, shape: Pi0LikeShape = Pi0LikeShape()):
    """The pi0-like layout with every floating tensor in `dtype`, or the real bf16/fp32 mix for 'mixed'."""
    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    layout = pi0_like_layout(shape)
    if dtype == "mixed":
        return layout
    return [(n, s, names[dtype] if d.is_floating_point else d) for n, s, d in layout]


class CheckpointFactory:
    """Writes a base and finetuned copies (each finetuned from the previous, as sequential skills are)."""

    def __init__(self, root: Path):
        self.root = root

    def make(self, dtype: str = "mixed", layout: str = "directory", num_finetuned: int = 1, seed: int = 0,
             extra: dict | None = None) -> tuple[Path, list[Path]]:
        base_state = random_state(layout_in(dtype), seed)
        base_state.update(extra or {})
        suffix = {"safetensors": ".safetensors", "torch": ".pt"}.get(layout, "")
        tag = f"{dtype}-{layout}-{num_finetuned}-{seed}"
        base = write_checkpoint(self.root / f"base-{tag}{suffix}", base_state, layout)
        finetuned, previous = [], base_state
        for i in range(num_finetuned):
            previous = finetuned_copy(previous, seed=seed + 100 + i)
            finetuned.append(write_checkpoint(self.root / f"ft{i + 1}-{tag}{suffix}", previous, layout))
        return base, finetuned


@pytest.fixture
def checkpoints(tmp_path) -> CheckpointFactory:
    return CheckpointFactory(tmp_path)


@pytest.fixture(autouse=True, scope="session")
def private_cache_home(tmp_path_factory):
    """Keep caches (e.g. the merge's sha256 cache) out of the user's home during tests."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
