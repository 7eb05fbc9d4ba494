"""LeRobot checkpoints' statistics at load: an action type they contradict is refused, and base / finetuned
checkpoints with different statistics are refused by the node's model manager and retain-merge unless the user
chooses; with the finetuned statistics, alpha 1 acts as the finetuned checkpoint does on its own.

Runs in .venv-lerobot (`make test-lerobot`); skipped where LeRobot is not installed.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("lerobot", reason="LeRobot is not installed here; run these with `make test-lerobot` "
                    "(.venv-lerobot, Python >= 3.12)")

import numpy as np  # noqa: E402
from lerobot_helpers import io_for, node_observations, with_action_stats  # noqa: E402

from retain_ros.errors import ConfigError  # noqa: E402
from retain_ros.merge.cli import main as retain_merge  # noqa: E402
from retain_ros.policy import load_policy  # noqa: E402
from retain_ros.serving.model_manager import ModelManager  # noqa: E402
from retain_ros.serving.recipes import MergeRequest  # noqa: E402

POSITION_LOW = np.array([-2.0, -1.2, -2.0, -2.9, -2.0, 0.9, -2.5, 0.0])  # FR3 joint angles: j4 < 0 < j6
POSITION_HIGH = np.array([2.0, 1.2, 2.0, -0.5, 2.0, 3.6, 2.5, 1.0])


def test_a_checkpoint_whose_statistics_say_positions_is_refused_under_the_velocity_default(
        lerobot_checkpoints, tmp_path):
    base, _ = lerobot_checkpoints("pi0")
    positions = with_action_stats(base, tmp_path / "pi0_positions", POSITION_LOW, POSITION_HIGH)
    with pytest.raises(ConfigError, match="look like joint positions, but lerobot_action is 'droid_joint_velocity'"):
        load_policy(positions, io_mapping=io_for("pi0"))
    policy = load_policy(positions, io_mapping=dataclasses.replace(io_for("pi0"), action="joint_position"))
    chunk = policy.predict(node_observations(1)[0])
    assert chunk.space.kind == "joint_position" and np.isfinite(chunk.actions).all()


def test_differing_finetuned_statistics_are_refused_unless_chosen_and_finetuned_makes_alpha_1_the_finetuned(
        lerobot_checkpoints, tmp_path):
    base, ft = lerobot_checkpoints("pi0")
    own = with_action_stats(ft, tmp_path / "ft_own_stats", np.full(8, -0.3), np.full(8, 0.3))
    request = MergeRequest(str(base), (str(own),), 1.0)
    with pytest.raises(ConfigError, match=r"differ from the base's .* Choose with the lerobot_stats parameter"):
        ModelManager(io_mapping=io_for("pi0")).load_initial(request)
    obs = node_observations(1)[0]
    alone = load_policy(own, io_mapping=io_for("pi0")).predict(obs).actions
    served = {}
    for choice in ("finetuned", "base"):
        manager = ModelManager(io_mapping=io_for("pi0"), stats=choice)
        model = manager.load_initial(request)
        assert model.statistics["choice"] == choice and "action." in model.statistics["differ"]
        served[choice] = model.policy.predict(obs).actions
        manager.close()
    np.testing.assert_allclose(served["finetuned"], alone, atol=1e-4)  # alpha 1 = the finetuned policy
    assert not np.allclose(served["base"], alone, atol=1e-3)  # the base's scale: not what was finetuned

    # retain-merge: refused without --stats; with --stats finetuned its output acts as the finetuned at alpha 1
    assert retain_merge([str(base), str(own), "--alpha", "1", "--out", str(tmp_path / "m0"), "-q"]) != 0
    out = tmp_path / "m1"
    assert retain_merge([str(base), str(own), "--alpha", "1", "--stats", "finetuned", "--out", str(out), "-q"]) == 0
    merged = load_policy(out, io_mapping=io_for("pi0")).predict(obs).actions
    np.testing.assert_allclose(merged, alone, atol=1e-4)


def test_a_pi0_in_bfloat16_serves_and_merges_live_in_half_the_memory(lerobot_checkpoints):
    """`dtype: bfloat16` on a float32 pi0 checkpoint: every copy in bf16 (LeRobot's float32 exceptions kept), an
    alpha change merged into a bf16 spare copy and swapped, finite chunks throughout."""
    import torch

    from retain_ros.ros.processes import wait_until

    base, ft = lerobot_checkpoints("pi0")
    obs = node_observations(1)[0]
    sizes = {}
    for dtype in ("float32", "bfloat16"):
        manager = ModelManager(io_mapping=io_for("pi0"), dtype=dtype)
        model = manager.load_initial(MergeRequest(str(base), (str(ft),), 0.5))
        params = dict(model.policy.named_parameters())
        sizes[dtype] = sum(t.numel() * t.element_size() for t in params.values())
        if dtype == "bfloat16":
            share = sum(t.numel() for t in params.values() if t.dtype == torch.bfloat16) / sum(
                t.numel() for t in params.values())
            assert share > 0.5, share  # the language models; LeRobot keeps some layers in float32
            manager.start()
            manager.request(MergeRequest(str(base), (str(ft),), 0.9))
            wait_until(lambda: manager._ready is not None, 60, "the alpha-0.9 merge")
            swapped = manager.take_swap()
            assert swapped.request.alpha == 0.9 and swapped.generation == 2
            assert all(t.dtype == params[n].dtype for n, t in swapped.policy.named_parameters())
        assert np.isfinite(manager.serving.policy.predict(obs).actions).all()
        manager.close()
    assert sizes["bfloat16"] < 0.75 * sizes["float32"]
    with pytest.raises(ConfigError, match="dtype 'bfloat16' is not available for this smolvla checkpoint"):
        ModelManager(io_mapping=io_for("smolvla"), dtype="bfloat16").load_initial(
            MergeRequest(str(lerobot_checkpoints("smolvla")[0]), (), 0.5))


def test_a_bfloat16_pi0_with_one_copy_merges_in_place_exactly_as_into_a_spare(lerobot_checkpoints):
    """swap_mode in_place on a LeRobot pi0 in bf16 (the fp32 pi0.5 on a 24 GB card case, at the tests' size): no spare
    copy, the serving tensors themselves are written, and the weights equal the two-copy merge's, bit for bit."""
    import torch

    from retain_ros.ros.processes import wait_until

    base, ft = lerobot_checkpoints("pi0")
    merged = {}
    for mode in ("standby", "in_place"):
        manager = ModelManager(io_mapping=io_for("pi0"), dtype="bfloat16", swap_mode=mode)
        first = manager.load_initial(MergeRequest(str(base), (str(ft),), 0.5))
        pointers = {n: t.data_ptr() for n, t in first.policy.named_parameters()}
        manager.start()
        manager.request(MergeRequest(str(base), (str(ft),), 0.9))
        wait_until(lambda: manager._ready is not None, 60, f"the alpha-0.9 merge ({mode})")
        swapped = manager.take_swap()
        assert swapped.in_place == (mode == "in_place") and swapped.request.alpha == 0.9
        params = dict(swapped.policy.named_parameters())
        if mode == "in_place":
            assert {n: t.data_ptr() for n, t in params.items()} == pointers
            assert manager.memory()["copies"] == 1 and swapped.policy.spare_copies() == ()
        merged[mode] = {n: t.detach().clone() for n, t in params.items()}
        manager.close()
    assert all(torch.equal(merged["standby"][n], t) for n, t in merged["in_place"].items())
