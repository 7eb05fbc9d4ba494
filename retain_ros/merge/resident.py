"""Resident re-merge for a running policy: the inputs stay on the device, a new alpha costs one pass over memory.

The pretrained and finetuned weights are loaded once into flat buffers, one per (group, dtype), so producing the
weights for new alphas is one `torch.lerp` (or weighted sum) per buffer, at memory bandwidth and without touching the
files. The finetuned weights are kept as they are rather than as deltas (theta_ft - theta_pre): a delta stored in bf16
would lose precision and one stored in fp32 would double the memory, while lerp reads two tensors either way.

Thread use: `merge` only reads the resident inputs and writes the output buffers it is given (or fresh ones), so a
caller can build the next weights on a worker thread while the current ones serve, then swap one reference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from retain_ros.merge.checkpoint import Checkpoint
from retain_ros.merge.groups import AUTO
from retain_ros.merge.maths import SEQUENTIAL, AlphaSpec, as_alpha_spec, coefficients, combine, fingerprint_tensors
from retain_ros.merge.plan import MergePlan, plan_merge

_FIXED = "__fixed__"  # integer/bool tensors: taken from the base, never interpolated


@dataclass
class _Bucket:
    """One flat buffer per input for all tensors of one group and dtype, and where each tensor sits in it."""

    group: str
    dtype: torch.dtype
    slots: dict[str, tuple[int, tuple[int, ...]]]  # name -> (offset, shape)
    numel: int
    inputs: list[torch.Tensor] = field(default_factory=list)  # base, finetuned 1..n


@dataclass
class MergedWeights:
    """Weights for one set of alphas: `tensors` are views into a few flat buffers (do not modify them)."""

    tensors: dict[str, torch.Tensor]
    alphas: dict[str, tuple[float, ...]]
    seconds: float
    _flats: dict[tuple[str, torch.dtype], torch.Tensor]
    _fingerprint: str | None = None

    def fingerprint(self) -> str:
        """sha256 over names and bytes (cached); equals `fingerprint_tensors` of the same weights loaded from disk."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_tensors(self.tensors)
        return self._fingerprint


class ResidentMerger:
    """Holds theta_pre and the finetuned weights on a device and merges them for any alphas on request."""

    def __init__(self, plan: MergePlan, device: str | torch.device = "cpu", pin_memory: bool = False):
        """Load every tensor of the plan's inputs into resident flat buffers on `device` (reads the files once).

        `pin_memory` (CPU buffers only) page-locks them, so a CUDA device can copy blocks of them at full bus speed.
        """
        self.device = torch.device(device)
        self._pin = pin_memory and self.device.type == "cpu"
        self.mode = plan.mode
        self.groups = plan.preset.groups
        self.preset_name = plan.preset.name
        self.num_finetuned = len(plan.finetuned)
        self.warnings = list(plan.warnings)
        self.aliases = {n: names[0] for names in plan.tied for n in names[1:]}
        self._buckets = self._layout(plan)
        for bucket in self._buckets.values():
            for checkpoint in plan.inputs:
                bucket.inputs.append(self._load(checkpoint, bucket))
        self.nbytes = sum(b.numel * b.dtype.itemsize * len(b.inputs) for b in self._buckets.values())

    @classmethod
    def from_checkpoints(cls, base: str | Checkpoint, finetuned: Sequence[str | Checkpoint], groups: str = AUTO,
                         mode: str = SEQUENTIAL, device: str | torch.device = "cpu",
                         allow_dtype_cast: bool = False) -> ResidentMerger:
        """Validate the checkpoints (as retain-merge does) and load them resident.

        Raises:
            ConfigError: the same problems retain-merge reports (paths, keys, shapes, dtypes, groups).
        """
        plan = plan_merge(base, finetuned, AlphaSpec.uniform(0.0), groups, mode, allow_dtype_cast)
        try:
            return cls(plan, device)
        finally:
            plan.close()

    def resolve(self, alpha: AlphaSpec | float | Mapping[str, float]) -> dict[str, tuple[float, ...]]:
        """Check alphas and expand them per group (a float = that alpha everywhere; a mapping = per group).

        Raises:
            ConfigError: alpha not in [0, 1], unknown group, wrong number of values.
        """
        return as_alpha_spec(alpha).resolve(self.groups, self.num_finetuned)

    def allocate(self) -> dict[tuple[str, torch.dtype], torch.Tensor]:
        """Fresh output buffers (pass them to `merge(out=...)` to reuse memory across merges).

        They are zero-filled so the pages are touched here, not during the first merge into them.
        """
        return {key: torch.zeros(b.numel, dtype=b.dtype, device=self.device) for key, b in self._buckets.items()}

    def merge(self, alpha: AlphaSpec | float | Mapping[str, float],
              out: dict[tuple[str, torch.dtype], torch.Tensor] | None = None) -> MergedWeights:
        """Build the merged weights for `alpha`.

        Args:
            alpha: the merge weights (validated before any work).
            out: buffers from `allocate()` to write into; they must not be the ones currently serving.
        """
        alphas = self.resolve(alpha)
        started = time.perf_counter()
        flats = self.allocate() if out is None else out
        for key, bucket in self._buckets.items():
            if bucket.group == _FIXED:
                flats[key].copy_(bucket.inputs[0])
            else:
                combine(bucket.inputs, coefficients(alphas[bucket.group], self.mode), out=flats[key])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        tensors = {}
        for key, bucket in self._buckets.items():
            for name, (offset, shape) in bucket.slots.items():
                tensors[name] = flats[key][offset:offset + math.prod(shape)].view(shape)
        for alias, target in self.aliases.items():
            tensors[alias] = tensors[target]
        return MergedWeights(tensors, alphas, time.perf_counter() - started, flats)

    def input_views(self, name: str) -> list[torch.Tensor]:
        """Flat views of one tensor in every resident input (base first); aliases resolve to their target."""
        name = self.aliases.get(name, name)
        for bucket in self._buckets.values():
            slot = bucket.slots.get(name)
            if slot is not None:
                offset, shape = slot
                return [flat[offset:offset + math.prod(shape)] for flat in bucket.inputs]
        raise KeyError(name)

    def _layout(self, plan: MergePlan) -> dict[tuple[str, torch.dtype], _Bucket]:
        buckets: dict[tuple[str, torch.dtype], _Bucket] = {}
        for name, spec in plan.base.specs.items():
            if name in self.aliases:
                continue
            group = plan.assignment.group_of[name] if spec.is_float else _FIXED
            bucket = buckets.setdefault((group, spec.dtype), _Bucket(group, spec.dtype, {}, 0))
            bucket.slots[name] = (bucket.numel, spec.shape)
            bucket.numel += spec.numel
        return buckets

    def _load(self, checkpoint: Checkpoint, bucket: _Bucket) -> torch.Tensor:
        flat = torch.empty(bucket.numel, dtype=bucket.dtype, pin_memory=self._pin)
        for name, (offset, shape) in bucket.slots.items():
            n = math.prod(shape)
            if checkpoint.specs[name].dtype == bucket.dtype:
                checkpoint.read(name, 0, n, out=flat[offset:offset + n])
            else:  # --allow-dtype-cast: stored in the base's dtype
                flat[offset:offset + n].copy_(checkpoint.read(name))
        return flat.to(self.device)
