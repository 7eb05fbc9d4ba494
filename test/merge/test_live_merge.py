"""The node's live merge (`LiveMerger`) against retain-merge's disk merge, bit for bit, in both memory layouts.

The targets are plain tensors standing in for a model's weights; the disk merge is read back with the safetensors
library, not with the code under test. The identity is the recipe's: it must change with any alpha, input or preset,
and equal recipes must give equal weights.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from retain_ros.errors import ConfigError
from retain_ros.merge.live import RESIDENT, STREAMED, LiveMerger, plan_memory
from retain_ros.merge.maths import AlphaSpec, ContentHasher, fingerprint_tensors

from test_merge_maths import load_all, merge


def targets_like(state: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> dict[str, list[torch.Tensor]]:
    """Fresh weight tensors of the checkpoint's shapes (floating ones in `dtype` when given), filled with garbage."""
    out = {}
    for name, t in state.items():
        want = dtype if dtype is not None and t.is_floating_point() else t.dtype
        out[name] = [torch.full(t.shape, 7, dtype=want)]
    return out


def flat(targets: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {n: ts[0] for n, ts in targets.items()}


@pytest.mark.parametrize("dtype", ["bf16", "mixed"])
@pytest.mark.parametrize("layout", [RESIDENT, STREAMED])
@pytest.mark.parametrize("num_finetuned", [1, 2])
def test_live_merge_into_targets_is_bit_identical_to_the_disk_merge(checkpoints, tmp_path, dtype, layout,
                                                                    num_finetuned):
    base, finetuned = checkpoints.make(dtype, "sharded" if num_finetuned == 2 else "directory", num_finetuned)
    # small blocks: a tensor spans several blocks and blocks end mid-tensor
    merger = LiveMerger.from_checkpoints(str(base), [str(f) for f in finetuned], groups="pi0", layout=layout,
                                         block_elements=1000)
    targets = targets_like(load_all(base))
    for alpha in (0.0, 0.3, 0.7, 1.0):
        spec = AlphaSpec.uniform(alpha, language=alpha / 2)
        merge(base, finetuned, spec, tmp_path / f"out{alpha}")
        done = merger.merge_into({"default": alpha, "language": alpha / 2}, targets)
        disk = load_all(tmp_path / f"out{alpha}")
        assert set(targets) == set(disk)
        for name, value in disk.items():
            got = targets[name][0]
            assert got.dtype == value.dtype and torch.equal(got.view(torch.uint8), value.view(torch.uint8)), \
                (alpha, name)
        assert fingerprint_tensors(flat(targets)) == fingerprint_tensors(disk)
        assert done.alphas["language"] == (alpha / 2,) * num_finetuned
    merger.close()


def test_fp32_model_of_a_bf16_checkpoint_gets_the_merge_cast_once(checkpoints, tmp_path):
    """A model held in fp32 (LeRobot's pi0 default) gets exactly what loading the merged bf16 file would give it."""
    base, finetuned = checkpoints.make("bf16")
    merger = LiveMerger.from_checkpoints(str(base), [str(finetuned[0])], groups="pi0", layout=STREAMED,
                                         block_elements=512)
    targets = targets_like(load_all(base), dtype=torch.float32)
    merger.merge_into(0.4, targets)
    merge(base, finetuned, AlphaSpec.uniform(0.4), tmp_path / "out")
    for name, value in load_all(tmp_path / "out").items():
        assert torch.equal(targets[name][0], value.to(targets[name][0].dtype)), name


def test_recipe_identity_changes_with_any_alpha_input_or_preset_and_not_otherwise(checkpoints, tmp_path):
    base, (ft,) = checkpoints.make("mixed")
    _, (other_ft,) = checkpoints.make("mixed", seed=5)
    paths = (str(base), [str(ft)])
    resident = LiveMerger.from_checkpoints(*paths, groups="pi0", layout=RESIDENT)
    streamed = LiveMerger.from_checkpoints(*paths, groups="pi0", layout=STREAMED)
    ids = {}
    for name, merger, alpha in (("a", resident, 0.5), ("b", resident, {"default": 0.5, "vision": 0.25}),
                                ("c", resident, 0.6)):
        ids[name] = merger.recipe_id(merger.resolve(alpha))
    ids["other input"] = LiveMerger.from_checkpoints(str(base), [str(other_ft)], groups="pi0",
                                                     layout=STREAMED).recipe_id(resident.resolve(0.5))
    ids["other preset"] = LiveMerger.from_checkpoints(*paths, groups="all", layout=STREAMED).recipe_id(
        {"all": (0.5,)})
    assert len(set(ids.values())) == len(ids), ids
    # the same recipe: same identity whatever the layout, another merger object or a copy of the files elsewhere
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    for src in (base, ft):
        dst = copy_dir / src.name
        dst.mkdir()
        for f in src.iterdir():
            (dst / f.name).write_bytes(f.read_bytes())
    same = [streamed.recipe_id(streamed.resolve(0.5)),
            LiveMerger.from_checkpoints(str(copy_dir / base.name), [str(copy_dir / ft.name)], groups="pi0",
                                        layout=STREAMED).recipe_id(resident.resolve(0.5))]
    assert set(same) == {ids["a"]}


def test_equal_recipes_give_equal_content_hashes(checkpoints):
    base, finetuned = checkpoints.make("mixed", num_finetuned=2)
    paths = (str(base), [str(f) for f in finetuned])
    by_recipe: dict[str, set[str]] = {}
    for layout, alphas in ((RESIDENT, (0.3, 0.8, 0.3)), (STREAMED, (0.8, 0.3))):
        merger = LiveMerger.from_checkpoints(*paths, groups="pi0", layout=layout, block_elements=777)
        targets = targets_like(load_all(base))
        for alpha in alphas:
            done = merger.merge_into(alpha, targets)
            hasher = ContentHasher(flat(targets), step_bytes=4096)
            while not hasher.step():
                pass
            by_recipe.setdefault(done.weights_id, set()).add(hasher.hexdigest())
    assert len(by_recipe) == 2 and all(len(h) == 1 for h in by_recipe.values()), by_recipe
    assert len(set().union(*by_recipe.values())) == 2


def test_a_file_rewritten_in_place_after_loading_is_refused_not_mixed(checkpoints):
    base, (ft,) = checkpoints.make("bf16")
    merger = LiveMerger.from_checkpoints(str(base), [str(ft)], groups="pi0", layout=STREAMED)
    targets = targets_like(load_all(base))
    merger.merge_into(0.5, targets)
    weights = ft / "model.safetensors"
    data = weights.read_bytes()
    time.sleep(0.01)
    with open(weights, "r+b") as f:  # same inode, same size, new bytes: what re-exporting over the old file does
        f.write(data)
    os.utime(weights)
    with pytest.raises(ConfigError, match="rewritten on disk.*~/reload"):
        merger.merge_into(0.6, targets)


def test_targets_that_do_not_fit_are_refused_before_anything_is_written(checkpoints):
    base, (ft,) = checkpoints.make("bf16")
    merger = LiveMerger.from_checkpoints(str(base), [str(ft)], groups="pi0", layout=RESIDENT)
    state = load_all(base)
    targets = targets_like(state)
    name = next(iter(state))
    targets[name] = [torch.zeros(3)]
    untouched = {n: t[0].clone() for n, t in targets.items()}
    with pytest.raises(ConfigError, match=f"'{name}'.*wrong architecture"):
        merger.merge_into(0.5, targets)
    assert all(torch.equal(untouched[n], t[0]) for n, t in targets.items())
    del targets[name]
    with pytest.raises(ConfigError, match="1 missing"):
        merger.merge_into(0.5, targets)


def test_memory_plan_accounting_and_auto_choice():
    gb = 10**9
    cpu = plan_memory("auto", 4 * gb, 8 * gb, "cpu")
    assert (cpu.layout, cpu.device_bytes, cpu.host_bytes) == (STREAMED, 8 * gb, 0)
    resident = plan_memory("resident", 4 * gb, 8 * gb, "cpu")
    assert resident.device_bytes == 16 * gb
    # on a GPU, auto keeps the inputs on the device only when they fit next to the standby copy with headroom
    assert plan_memory("auto", 6.6 * gb, 13.2 * gb, "cuda", free_bytes=70 * gb).layout == RESIDENT
    tight = plan_memory("auto", 6.6 * gb, 13.2 * gb, "cuda", free_bytes=16 * gb)
    assert (tight.layout, tight.device_bytes, tight.host_bytes) == (STREAMED, 13.2 * gb, 13.2 * gb)
    with pytest.raises(ConfigError, match="unknown merge_layout 'fast'"):
        plan_memory("fast", 1, 2, "cpu")


def test_the_node_parameter_table_offers_the_layouts_the_merger_has():
    from retain_ros.control.params import MERGE_LAYOUTS
    from retain_ros.merge.live import LAYOUTS

    assert MERGE_LAYOUTS == LAYOUTS


def test_merge_threads_run_at_a_lower_priority_than_the_control_thread():
    import threading

    from retain_ros.merge.live import lower_thread_priority

    seen = []

    def body():
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        lower_thread_priority()
        seen.append((before, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    (before, after), = seen
    assert after == min(19, before + 10)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # only that thread changed
