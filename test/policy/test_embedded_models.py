"""The checkpoints shipped in retain_ros/models/ (regenerate with `make models`): they load, run and merge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import retain_ros
from retain_ros.merge.maths import AlphaSpec
from retain_ros.merge.plan import plan_merge
from retain_ros.policy import load_policy
from retain_ros.policy.reference_policy import example_observation

MODELS = Path(retain_ros.__file__).resolve().parent / "models"
NAMES = ("base", "task_ft", "co_ft", "co_ft2", "co_ft2_single")


def test_every_embedded_checkpoint_is_shipped():
    """A packaging loss must fail here, not skip the tests below."""
    files = ("config.json", "model.safetensors", "normalization.json", "tokenizer.json")
    missing = [f"{n}/{f}" for n in NAMES for f in files if not (MODELS / n / f).is_file()]
    assert not missing, f"embedded checkpoint files missing: {missing}; regenerate with `make models`"


@pytest.mark.parametrize("name", NAMES)
def test_embedded_checkpoint_loads_and_predicts(name):
    policy = load_policy(MODELS / name)
    chunk = policy.predict(example_observation(policy.spec, size=(128, 128)))
    assert chunk.actions.shape == (policy.spec.horizon, 8) and np.all(np.isfinite(chunk.actions))
    assert (MODELS / name / "model.safetensors").stat().st_size < 8e6


@pytest.mark.parametrize("name", NAMES[1:])
def test_embedded_finetuned_checkpoints_merge_with_the_base(name):
    plan = plan_merge(MODELS / "base", [MODELS / name], AlphaSpec.uniform(0.5), groups="reference")
    try:
        assert not plan.assignment.unmatched
        assert all(s["tensors"] > 0 for s in plan.group_stats().values())
    finally:
        plan.close()
    base, ft = load_policy(MODELS / "base"), load_policy(MODELS / name)
    np.testing.assert_array_equal(base.processor.stats.action_mean, ft.processor.stats.action_mean)


def test_the_embedded_value_function_fits_the_embedded_policies_and_scores_their_samples():
    from retain_ros.steering.selection import Steerer
    from retain_ros.steering.value_function import ValueFunction

    value = ValueFunction.from_pretrained(MODELS / "value")
    assert (MODELS / "value" / "model.safetensors").stat().st_size < 8e6
    assert value.training_summary()["held_out"]["auc_success"] > 0.5  # its calibration travels with it
    policy = load_policy(MODELS / "base")
    value.check_fits(policy.spec)
    steered = Steerer("value", 4, value).choose(policy, example_observation(policy.spec, size=(128, 128)))
    assert steered.values.shape == (4,) and np.all(np.isfinite(steered.values))
    assert steered.index == int(np.argmax(steered.values))
