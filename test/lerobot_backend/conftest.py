"""Fixtures of the LeRobot backend tests: tiny pi0 / pi0.5 / SmolVLA checkpoints and finetuned copies, built once.

These tests run in .venv-lerobot (`make test-lerobot`); elsewhere each test module skips itself. Everything runs with
the Hugging Face hub offline, as on a robot PC without internet.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

if importlib.util.find_spec("lerobot") is not None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported, so before any test imports it


@pytest.fixture(scope="session")
def tiny_lerobot():
    """LeRobot's pi models at test size for the whole session (SmolVLA is tiny through its VLM directory)."""
    from lerobot_helpers import tiny_pi_models

    with tiny_pi_models():
        yield


@pytest.fixture(scope="session")
def lerobot_checkpoints(tmp_path_factory, tiny_lerobot):
    """kind -> (base, finetuned) checkpoint directories, written on first use ('pi0_bf16': pi0 in bfloat16)."""
    from lerobot_helpers import build_checkpoint, finetuned_copy

    root = tmp_path_factory.mktemp("lerobot")
    made: dict[str, tuple] = {}

    def get(kind: str):
        if kind not in made:
            lerobot_type, _, dtype = kind.partition("_")
            base = build_checkpoint(lerobot_type, root / f"{kind}_base", root / "assets", seed=0,
                                    dtype={"bf16": "bfloat16"}.get(dtype, "float32"))
            made[kind] = (base, finetuned_copy(base, root / f"{kind}_ft", seed=1))
        return made[kind]

    return get
