"""Golden outputs of the embedded reference VLA: expected chunks for fixed observations, checkpoints and seed.

A numeric change in the model or its preprocessing (image resize and padding, tokenizer, normalisation, sampler) then
fails `test_reference_model.py::test_outputs_match_the_golden_file` instead of passing silently. When a change is
intended (new checkpoints, a fixed bug), regenerate the file and commit it with the change:

    .venv/bin/python test/policy/golden.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "reference_vla_golden.json"
CHECKPOINTS = ("base", "task_ft", "co_ft")
SEED = 0


def observations(spec) -> dict[str, object]:
    """Two fixed observations: the model's own image size, and another size (resize + padding) with the target task."""
    from retain_ros.policy.reference_policy import example_observation

    native = example_observation(spec, seed=1)
    other = example_observation(spec, seed=2, size=(48, 80))
    other.instruction = "push the red cube to the purple square"
    return {"native_size": native, "resized_target_instruction": other}


def compute() -> dict[str, dict[str, list[list[float]]]]:
    """checkpoint -> observation name -> chunk (horizon x action_dim), on one CPU thread."""
    from retain_ros.paths import embedded_models_dir
    from retain_ros.policy.reference_policy import ReferencePolicy

    torch.set_num_threads(1)
    out: dict[str, dict[str, list[list[float]]]] = {}
    for name in CHECKPOINTS:
        policy = ReferencePolicy.from_pretrained(embedded_models_dir() / name, seed=SEED)
        out[name] = {key: np.asarray(policy.predict(obs).actions, np.float64).round(6).tolist()
                     for key, obs in observations(policy.spec).items()}
    return out


def main() -> int:
    GOLDEN.write_text(json.dumps({"checkpoints": list(CHECKPOINTS), "seed": SEED, "chunks": compute()}) + "\n")
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
