"""RETAIN merges of LeRobot checkpoints: the shipped presets group every tensor by its module, and `retain-merge`
(the real CLI, in a subprocess) writes a checkpoint LeRobot loads that equals the node's resident merge.

Runs in .venv-lerobot (`make test-lerobot`); skipped where LeRobot is not installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("lerobot", reason="LeRobot is not installed here; run these with `make test-lerobot` "
                    "(.venv-lerobot, Python >= 3.12)")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lerobot_helpers import KINDS, intended_groups, io_for, node_observations  # noqa: E402

from retain_ros.merge.maths import AlphaSpec  # noqa: E402
from retain_ros.merge.plan import plan_merge  # noqa: E402
from retain_ros.merge.resident import ResidentMerger  # noqa: E402
from retain_ros.policy import load_policy  # noqa: E402

RETAIN_MERGE = str(Path(sys.executable).parent / "retain-merge")
ROW = re.compile(r"^(vision|language|action|normalization)\s+[\d.,]+\s+(\d+)\s+[\d.]+M", re.MULTILINE)


def retain_merge(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([RETAIN_MERGE, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kind", KINDS)
def test_dry_run_puts_every_tensor_in_the_group_of_its_module(kind, lerobot_checkpoints):
    base, ft = lerobot_checkpoints(kind)
    intended = intended_groups(load_policy(base, io_mapping=io_for(kind)))
    assert "?" not in intended.values(), [n for n, g in intended.items() if g == "?"]
    done = retain_merge(base, ft, "--alpha", "0.5", "--groups", kind, "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    counts = {group: int(n) for group, n in ROW.findall(done.stdout)}
    expected = Counter(intended.values())
    assert counts == {"vision": expected["vision"], "language": expected["language"], "action": expected["action"],
                      "normalization": 0}, done.stdout
    assert "unmatched" not in done.stdout
    plan = plan_merge(base, [ft], AlphaSpec.uniform(0.5), groups=kind)
    try:
        assert plan.assignment.group_of == intended  # name by name, not only the counts
    finally:
        plan.close()


@pytest.mark.parametrize("kind", KINDS)
def test_auto_detection_picks_a_preset_that_covers_every_tensor(kind, lerobot_checkpoints):
    base, ft = lerobot_checkpoints(kind)
    plan = plan_merge(base, [ft], AlphaSpec.uniform(0.5))  # --groups auto, retain-merge's default
    try:
        assert plan.preset.name == ("smolvla" if kind == "smolvla" else "pi0")  # pi0.5's names follow pi0's rules
        assert not plan.assignment.unmatched
    finally:
        plan.close()


@pytest.mark.parametrize("kind", ["pi0", "smolvla"])
def test_retain_merge_output_loads_in_lerobot_and_equals_the_resident_merge(kind, lerobot_checkpoints, tmp_path):
    base, ft = lerobot_checkpoints(kind)
    out = tmp_path / "merged"
    done = retain_merge(base, ft, "--alpha", "0.25", "--group-alpha", "language=0.75", "--groups", kind,
                        "--out", out, "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("config.json", "policy_preprocessor.json", "policy_postprocessor.json"):
        assert (out / name).is_file(), name  # carried over: the merged directory is a LeRobot checkpoint
    from_disk = load_policy(out, io_mapping=io_for(kind))
    serving = load_policy(base, io_mapping=io_for(kind))
    merged = ResidentMerger.from_checkpoints(base, [ft], groups=kind).merge({"default": 0.25, "language": 0.75})
    serving.load_merged(merged.tensors)
    disk = dict(from_disk.named_parameters())
    for name, tensor in serving.named_parameters():
        torch.testing.assert_close(tensor, disk[name], atol=0, rtol=0)
    obs = node_observations(1, seed=4)[0]
    np.testing.assert_array_equal(serving.predict(obs).actions, from_disk.predict(obs).actions)
