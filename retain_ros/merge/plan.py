"""Planning a merge from headers alone: compatibility checks, groups, alphas and coefficients.

Everything a user can get wrong is caught here, before any tensor byte is read: missing or extra keys, shape and dtype
mismatches (each error names the key, both values and the files), parameters no group rule matches, unknown groups,
alphas outside [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from retain_ros.errors import ConfigError
from retain_ros.merge.checkpoint import Checkpoint
from retain_ros.merge.groups import AUTO, GroupAssignment, GroupPreset, resolve_preset
from retain_ros.merge.maths import MODES, SEQUENTIAL, AlphaSpec, coefficients

log = logging.getLogger(__name__)


@dataclass
class MergePlan:
    """A validated merge: inputs, groups, and the coefficients each tensor is combined with."""

    base: Checkpoint
    finetuned: list[Checkpoint]
    preset: GroupPreset
    assignment: GroupAssignment
    mode: str
    alphas: dict[str, tuple[float, ...]]
    coeffs: dict[str, tuple[float, ...]]
    tied: list[list[str]] = field(default_factory=list)
    integer_from_base: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    statistics: dict[str, str] | None = None  # whose LeRobot processor statistics the output carries, and why

    @property
    def inputs(self) -> list[Checkpoint]:
        return [self.base, *self.finetuned]

    def coeffs_of(self, name: str) -> tuple[float, ...]:
        return self.coeffs[self.assignment.group_of[name]]

    def group_stats(self) -> dict[str, dict]:
        """Per group: tensor count, parameter count and a few example names (for the dry run and the summary)."""
        stats = {g: {"tensors": 0, "parameters": 0, "examples": []} for g in self.preset.groups}
        for name, group in self.assignment.group_of.items():
            entry = stats.setdefault(group, {"tensors": 0, "parameters": 0, "examples": []})
            entry["tensors"] += 1
            entry["parameters"] += self.base.specs[name].numel
            if len(entry["examples"]) < 3:
                entry["examples"].append(name)
        return stats

    def close(self) -> None:
        for checkpoint in self.inputs:
            checkpoint.close()


def plan_merge(base: str | Checkpoint, finetuned: Sequence[str | Checkpoint], alpha: AlphaSpec,
               groups: str = AUTO, mode: str = SEQUENTIAL, allow_dtype_cast: bool = False,
               require_complete: bool = True) -> MergePlan:
    """Open the inputs, check them against each other and resolve groups and alphas.

    Args:
        base: the pretrained checkpoint (path or opened).
        finetuned: one or more finetuned checkpoints (several = sequential skills, in order).
        alpha: the requested merge weights.
        groups: a preset name, a YAML path, or 'auto'.
        mode: 'sequential' (paper Eq. 4) or 'task-arithmetic'.
        allow_dtype_cast: accept floating tensors whose dtype differs between inputs (stored in the base's dtype).
        require_complete: raise when names match no group rule (the dry run passes False to report them instead).

    Raises:
        ConfigError: any incompatibility, with the key, the values and the files involved.
    """
    if not finetuned:
        raise ConfigError("give at least one finetuned checkpoint after the base checkpoint")
    if mode not in MODES:
        raise ConfigError(f"unknown merge mode '{mode}'; choose one of: {', '.join(MODES)}")
    base_ckpt = base if isinstance(base, Checkpoint) else Checkpoint(base)
    ft_ckpts = [f if isinstance(f, Checkpoint) else Checkpoint(f) for f in finetuned]
    warnings: list[str] = []
    for ft in ft_ckpts:
        warnings += check_compatible(base_ckpt, ft, allow_dtype_cast)
    preset = resolve_preset(groups, base_ckpt.specs)
    assignment = preset.assign(base_ckpt.specs)
    if require_complete:
        assignment.require_complete()
    alphas = alpha.resolve(preset.groups, len(ft_ckpts))
    coeffs = {g: coefficients(a, mode) for g, a in alphas.items()}
    tied = [names for names in base_ckpt.tied if all(n in assignment.group_of for n in names)]
    for names in tied:
        tied_groups = {assignment.group_of[n] for n in names}
        if len({coeffs[g] for g in tied_groups}) > 1:
            warnings.append(f"tied tensors {names} fall in groups {sorted(tied_groups)} with different alphas; they "
                            f"stay tied and all use the alphas of '{assignment.group_of[names[0]]}'")
    integer_from_base = differing_integer_tensors(base_ckpt, ft_ckpts)
    if integer_from_base:
        warnings.append(f"{len(integer_from_base)} integer/bool tensor(s) differ between the inputs and are taken from "
                        f"the base: {integer_from_base[:10]}")
    for w in warnings:
        log.warning(w)
    return MergePlan(base_ckpt, ft_ckpts, preset, assignment, mode, alphas, coeffs, tied, integer_from_base, warnings)


def differing_integer_tensors(base: Checkpoint, finetuned: Sequence[Checkpoint]) -> list[str]:
    """Names of integer/bool tensors (buffers such as position ids) whose values differ between the inputs.

    They cannot be interpolated; the merge takes them from the base, and the caller warns with their names.
    """
    differing = []
    for name, spec in base.specs.items():
        if spec.is_float:
            continue
        reference = base.read(name)
        if any(not torch.equal(reference, ft.read(name)) for ft in finetuned):
            differing.append(name)
    return differing


def check_compatible(base: Checkpoint, other: Checkpoint, allow_dtype_cast: bool = False) -> list[str]:
    """Compare key sets, shapes and dtypes of two checkpoints from their headers.

    Returns:
        Warnings for tolerated differences (floating dtype casts when allowed).

    Raises:
        ConfigError: naming the first offending key, both values and both files.
    """
    missing = [n for n in base.specs if n not in other.specs]
    extra = [n for n in other.specs if n not in base.specs]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) of the base are missing from {other.path}: {missing[:5]}")
        if extra:
            parts.append(f"{len(extra)} tensor(s) of {other.path} are not in the base {base.path}: {extra[:5]}")
        raise ConfigError("the checkpoints hold different parameters; " + "; ".join(parts) +
                          ". Fix: merge checkpoints of the same architecture (the finetuned one must come from this "
                          "base)")
    warnings = []
    for name, spec in base.specs.items():
        theirs = other.specs[name]
        if spec.shape != theirs.shape:
            raise ConfigError(f"tensor '{name}' has shape {list(spec.shape)} in {spec.file} but {list(theirs.shape)} "
                              f"in {theirs.file}; these checkpoints are not the same architecture")
        if spec.dtype != theirs.dtype:
            if not (spec.is_float and theirs.is_float and allow_dtype_cast):
                raise ConfigError(f"tensor '{name}' is {_dt(spec.dtype)} in {spec.file} but {_dt(theirs.dtype)} in "
                                  f"{theirs.file}. Fix: save both in the same dtype, or pass --allow-dtype-cast to "
                                  "compute in float32 and store the base's dtype")
            warnings.append(f"tensor '{name}': {_dt(theirs.dtype)} in {theirs.file} is cast to the base's "
                            f"{_dt(spec.dtype)}")
    return _summarise_casts(warnings)


def _dt(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _summarise_casts(warnings: list[str]) -> list[str]:
    if len(warnings) <= 3:
        return warnings
    return warnings[:3] + [f"... and {len(warnings) - 3} more tensors cast to the base's dtype"]
