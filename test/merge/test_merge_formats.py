"""Checkpoint layouts in and out, carried-over files, tied tensors, and what the output records about its inputs."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from retain_ros.merge.checkpoint import Checkpoint
from retain_ros.merge.maths import AlphaSpec
from retain_ros.merge.plan import plan_merge
from retain_ros.merge.provenance import format_record, read_record
from retain_ros.merge.resident import ResidentMerger
from retain_ros.merge.streaming import merge_to_disk


def run_merge(base, finetuned, out, alpha=0.5, groups="auto", **kwargs):
    plan = plan_merge(base, finetuned, AlphaSpec.uniform(alpha), groups)
    try:
        return merge_to_disk(plan, out, **kwargs)
    finally:
        plan.close()


def test_sharded_input_gives_identically_sharded_output_with_index_and_carried_files(checkpoints, tmp_path):
    base, (ft,) = checkpoints.make("mixed", "sharded")
    (base / "tokenizer.json").write_text('{"vocab": {}}')
    (base / "policy_preprocessor.json").write_text("{}")
    result = run_merge(base, [ft], tmp_path / "out")
    out = result.out
    base_index = json.loads((base / "model.safetensors.index.json").read_text())
    out_index = json.loads((out / "model.safetensors.index.json").read_text())
    assert out_index["weight_map"] == base_index["weight_map"]
    assert out_index["metadata"]["total_size"] == base_index["metadata"]["total_size"]
    for name in ("config.json", "tokenizer.json", "policy_preprocessor.json"):
        assert (out / name).read_bytes() == (base / name).read_bytes()
    for file in set(base_index["weight_map"].values()):
        assert set(load_file(str(out / file))) == set(load_file(str(base / file)))


@pytest.mark.parametrize("layout", ["safetensors", "torch"])
def test_bare_safetensors_and_torch_state_dicts_merge_into_a_directory(checkpoints, tmp_path, layout):
    base, (ft,) = checkpoints.make("bf16", layout)
    result = run_merge(base, [ft], tmp_path / "out", alpha=1.0)
    merged = load_file(str(result.out / "model.safetensors"))
    expected = load_file(str(ft)) if layout == "safetensors" else torch.load(ft, weights_only=True)
    assert set(merged) == set(expected)
    assert all(torch.equal(merged[n], expected[n]) for n in expected)


def test_torch_pickle_that_needs_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:  # unpickling this would call os.system under plain torch.load
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "extra": Payload()}, path)
    with pytest.raises(ValueError, match="refusing to load this PyTorch file.*weights_only=True"):
        Checkpoint(path)
    assert not marker.exists()


def test_tied_tensors_in_a_state_dict_stay_tied(tmp_path):
    shared = torch.randn(16, 8)
    base = {"embed_tokens.weight": shared, "lm_head.weight": shared, "layer.weight": torch.randn(8, 8)}
    ft_shared = shared + 0.01
    ft = {"embed_tokens.weight": ft_shared, "lm_head.weight": ft_shared, "layer.weight": torch.randn(8, 8)}
    torch.save(base, tmp_path / "base.pt")
    torch.save(ft, tmp_path / "ft.pt")
    preset = tmp_path / "groups.yaml"
    preset.write_text("groups: [language, action]\nrules:\n  - [language, 'embed_tokens']\n"
                      "  - [action, 'lm_head|layer']\ndefault: null\n")
    plan = plan_merge(tmp_path / "base.pt", [tmp_path / "ft.pt"], AlphaSpec.uniform(0.5, action=0.9), str(preset))
    assert plan.tied == [["embed_tokens.weight", "lm_head.weight"]]
    assert any("tied" in w for w in plan.warnings)
    merge_to_disk(plan, tmp_path / "out")
    plan.close()
    merged = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert torch.equal(merged["embed_tokens.weight"], merged["lm_head.weight"])
    assert torch.allclose(merged["embed_tokens.weight"], torch.lerp(shared, ft_shared, 0.5))
    resident = ResidentMerger.from_checkpoints(tmp_path / "base.pt", [tmp_path / "ft.pt"], groups=str(preset))
    weights = resident.merge(0.3)
    assert weights.tensors["lm_head.weight"].data_ptr() == weights.tensors["embed_tokens.weight"].data_ptr()


def test_provenance_records_inputs_with_real_sha256_alphas_and_preset(checkpoints, tmp_path):
    base, (ft,) = checkpoints.make("mixed", "sharded")
    result = run_merge(base, [ft], tmp_path / "out", groups="pi0")
    record = json.loads((result.out / "retain_merge.json").read_text())
    assert record["preset"]["name"] == "pi0" and record["mode"] == "sequential"
    assert record["alphas"] == {"vision": [0.5], "language": [0.5], "action": [0.5], "normalization": [0.5]}
    for entry, checkpoint in zip(record["inputs"], (base, ft)):
        assert entry["path"] == str(checkpoint.resolve())
        for f in entry["files"]:
            data = (checkpoint / f["name"]).read_bytes()
            assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["size"] == len(data)
    # every output file carries the same record in its safetensors metadata, placeholders patched
    for file in result.files:
        with safe_open(str(file), framework="pt") as handle:
            embedded = json.loads(handle.metadata()["retain_merge"])
        assert embedded["inputs"] == record["inputs"] and "pending" not in json.dumps(embedded)
        header_len = struct.unpack("<Q", file.read_bytes()[:8])[0]
        assert (8 + header_len) % 8 == 0
    assert read_record(result.files[0]) == json.loads(handle_metadata(result.files[0]))
    text = format_record(read_record(result.out))
    assert "sha256" in text and "alpha 0.5" in text


def handle_metadata(file) -> str:
    with safe_open(str(file), framework="pt") as handle:
        return handle.metadata()["retain_merge"]


def test_sha256_is_correct_when_tensors_are_stored_out_of_name_order(tmp_path):
    """Hashing follows file offsets, not names: a file whose order differs from the base still hashes correctly."""
    from safetensors.torch import save_file

    base = {f"t{i}": torch.randn(1000) for i in range(5)}
    ft = {n: t + 1 for n, t in reversed(list(base.items()))}
    save_file(base, str(tmp_path / "a.safetensors"))
    save_file(ft, str(tmp_path / "b.safetensors"), metadata={"note": "x" * 13})
    result = run_merge(tmp_path / "a.safetensors", [tmp_path / "b.safetensors"], tmp_path / "out")
    for entry, path in zip(result.record["inputs"], ("a", "b")):
        data = (tmp_path / f"{path}.safetensors").read_bytes()
        assert entry["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()


def test_integer_buffers_that_differ_are_taken_from_the_base_with_a_warning_naming_them(checkpoints, tmp_path):
    ids = torch.arange(10, dtype=torch.int64)
    base, (ft,) = checkpoints.make("fp32", "torch", extra={"position_ids": ids, "mask": ids > 3})
    state = torch.load(ft, weights_only=True)
    state["position_ids"] = ids + 1
    torch.save(state, ft)
    plan = plan_merge(base, [ft], AlphaSpec.uniform(0.5), "all")
    assert plan.integer_from_base == ["position_ids"]
    assert any("position_ids" in w for w in plan.warnings)
    merge_to_disk(plan, tmp_path / "out")
    plan.close()
    merged = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert torch.equal(merged["position_ids"], ids) and merged["mask"].dtype == torch.bool
    assert read_record(tmp_path / "out")["integer_from_base"] == ["position_ids"]


def test_sha256_cache_is_reused_for_unchanged_files_and_never_stale(tmp_path):
    """Regression guard for the digest cache: rewriting a file in place (same size, same mtime) must re-hash it."""
    import os

    from safetensors.torch import save_file

    from retain_ros.merge.hashing import DigestCache

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"w": torch.zeros(64)}, str(a))
    save_file({"w": torch.ones(64)}, str(b))
    first = run_merge(a, [b], tmp_path / "out1").record
    assert DigestCache().get(b) == hashlib.sha256(b.read_bytes()).hexdigest()
    stat = b.stat()
    save_file({"w": torch.full((64,), 2.0)}, str(b))  # same size
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old mtime
    second = run_merge(a, [b], tmp_path / "out2").record
    assert second["inputs"][0] == first["inputs"][0]
    assert second["inputs"][1]["files"][0]["sha256"] == hashlib.sha256(b.read_bytes()).hexdigest()
    assert second["inputs"][1]["files"][0]["sha256"] != first["inputs"][1]["files"][0]["sha256"]
