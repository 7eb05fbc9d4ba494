"""The identity of merged weights, from the recipe that makes them: known before the merge, free at every alpha change.

Merging is deterministic (`combine` rounds once, in a fixed order), so the same inputs, preset, mode, alphas and merge
arithmetic give bit-identical weights. The recipe identity is a sha256 over exactly those: the sha256 of every input
file (computed once per file and remembered in the digest cache, as `retain-merge` does), the preset's name and its
tensor -> group assignment, the mode, the resolved alphas (exact float bits), the kind of device that computes (CUDA
kernels may round differently from the CPU's) and `ENGINE_VERSION`. A content hash of
the weights themselves (`maths.ContentHasher`) stays available to check that claim; it is not needed to serve.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from retain_ros.merge.checkpoint import Checkpoint
from retain_ros.merge.hashing import DigestCache, sha256_file

ENGINE_VERSION = 1  # bump when the merge arithmetic changes what bits a recipe produces


def file_digests(checkpoints: Sequence[Checkpoint], cache: DigestCache | None = None) -> list[list[str]]:
    """sha256 of each weight file of each checkpoint (cached digests reused, missing ones hashed in parallel)."""
    cache = DigestCache() if cache is None else cache
    files = [f for c in checkpoints for f in c.files]
    known = {f: cache.get(f) for f in files}
    missing = [f for f, d in known.items() if d is None]
    if missing:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sha256") as pool:
            fresh = dict(zip(missing, pool.map(sha256_file, missing)))
        cache.put(fresh)
        known.update(fresh)
    return [[known[f] for f in c.files] for c in checkpoints]


def assignment_digest(group_of: Mapping[str, str]) -> str:
    """sha256 of a tensor -> group assignment (a preset file edited to move a tensor changes it)."""
    return hashlib.sha256(json.dumps(sorted(group_of.items())).encode()).hexdigest()


def recipe_id(inputs: Sequence[Sequence[str]], alphas: Mapping[str, Sequence[float]], mode: str = "",
              preset: str = "", assignment: str = "", device: str = "cpu") -> str:
    """The identity of the weights a recipe produces (hex sha256).

    Args:
        inputs: per input checkpoint (base first), the sha256 of each of its weight files.
        alphas: group -> resolved alphas ({} when the base serves alone).
        mode: merge mode.
        preset: preset name.
        assignment: `assignment_digest` of the preset on these inputs.
        device: the kind of device that computes the merge ('cpu', 'cuda'): their kernels may round differently.
    """
    record = {"engine": ENGINE_VERSION, "device": device, "inputs": [list(files) for files in inputs], "mode": mode,
              "preset": preset, "assignment": assignment,
              "alphas": {g: [float(a).hex() for a in values] for g, values in sorted(alphas.items())}}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def base_recipe_id(base: str | Path) -> str:
    """Identity of a base checkpoint served alone (no finetuned input)."""
    with Checkpoint(base) as checkpoint:
        return recipe_id(file_digests([checkpoint]), {})
