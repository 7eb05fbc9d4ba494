"""RETAIN merge maths as pure functions on tensors.

Both merge modes are a weighted sum of the inputs x_0 = theta_pre, x_1..x_n = the finetuned checkpoints:
- sequential (paper Eq. 4): theta_k = (1 - a_k) theta_{k-1} + a_k x_k, so
  c_0 = prod_k (1 - a_k),  c_i = a_i prod_{k>i} (1 - a_k);
- task arithmetic: theta = x_0 + sum_i a_i (x_i - x_0), so c_0 = 1 - sum_i a_i,  c_i = a_i.
With one finetuned input both are (1 - a) x_0 + a x_1 (Eq. 2). The coefficients are computed in float64; tensors are
combined in float32 (torch's lerp on bf16/fp16 computes in float32 and rounds once) and stored in their own dtype.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from retain_ros.errors import ConfigError

_PARALLEL_HASH_BYTES = 64 << 20  # below this, starting threads costs more than it saves

SEQUENTIAL = "sequential"
TASK_ARITHMETIC = "task-arithmetic"
MODES = (SEQUENTIAL, TASK_ARITHMETIC)


def check_alpha(value: float, what: str = "alpha") -> float:
    """Return `value` as a float in [0, 1].

    Raises:
        ConfigError: NaN, infinite or outside [0, 1].
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number in [0, 1], got {value!r}") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{what} must be in [0, 1] (0 = pretrained, 1 = finetuned), got {value}")
    return value


@dataclass(frozen=True)
class AlphaSpec:
    """The merge weights a user asked for.

    Attributes:
        alpha: one weight per finetuned input (a single value applies to every step).
        group_alpha: per-group overrides, each also one value or one per finetuned input.
    """

    alpha: tuple[float, ...]
    group_alpha: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @staticmethod
    def uniform(alpha: float | Sequence[float], **group_alpha: float | Sequence[float]) -> AlphaSpec:
        """Build a spec from plain numbers (a keyword per group that differs, e.g. language=0.25)."""
        as_tuple = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,)  # noqa: E731
        return AlphaSpec(as_tuple(alpha), {g: as_tuple(v) for g, v in group_alpha.items()})

    def resolve(self, groups: Sequence[str], num_finetuned: int) -> dict[str, tuple[float, ...]]:
        """Per group, one checked alpha per finetuned input.

        Raises:
            ConfigError: unknown group name (lists the preset's groups), wrong number of values, alpha not in [0, 1].
        """
        for group in self.group_alpha:
            if group not in groups:
                raise ConfigError(f"unknown group '{group}' in a group alpha; this preset's groups are: "
                                  f"{', '.join(groups)}")
        resolved = {}
        for group in groups:
            values = self.group_alpha.get(group, self.alpha)
            what = f"alpha of group '{group}'" if group in self.group_alpha else "alpha"
            if len(values) == 1:
                values = values * num_finetuned
            if len(values) != num_finetuned:
                raise ConfigError(f"{what}: {len(values)} values for {num_finetuned} finetuned checkpoints; give one "
                                  "value, or one per finetuned checkpoint (comma-separated)")
            resolved[group] = tuple(check_alpha(v, what) for v in values)
        return resolved


def as_alpha_spec(alpha: AlphaSpec | float | Mapping[str, float]) -> AlphaSpec:
    """An AlphaSpec from a spec, one alpha for every group, or a mapping group -> alpha ('default' for the rest)."""
    if isinstance(alpha, AlphaSpec):
        return alpha
    if isinstance(alpha, Mapping):
        return AlphaSpec.uniform(alpha.get("default", 0.0), **{g: v for g, v in alpha.items() if g != "default"})
    return AlphaSpec.uniform(alpha)


def coefficients(alphas: Sequence[float], mode: str = SEQUENTIAL) -> tuple[float, ...]:
    """Weights (c_0, ..., c_n) of theta_pre and each finetuned input for one group.

    Raises:
        ConfigError: unknown mode.
    """
    if mode == SEQUENTIAL:
        coeffs = [1.0]
        for a in alphas:
            coeffs = [c * (1.0 - a) for c in coeffs] + [a]
        return tuple(coeffs)
    if mode == TASK_ARITHMETIC:
        return (1.0 - math.fsum(alphas), *alphas)
    raise ConfigError(f"unknown merge mode '{mode}'; choose one of: {', '.join(MODES)}")


def copied_input(coeffs: Sequence[float]) -> int | None:
    """Index of the input that the coefficients reproduce exactly (one weight 1, the rest 0), else None."""
    ones = [i for i, c in enumerate(coeffs) if c == 1.0]
    if len(ones) == 1 and all(c == 0.0 for i, c in enumerate(coeffs) if i != ones[0]):
        return ones[0]
    return None


def combine(inputs: Sequence[torch.Tensor], coeffs: Sequence[float], out: torch.Tensor | None = None) -> torch.Tensor:
    """Return sum_i coeffs[i] * inputs[i], computed in float32 (or float64 for float64 tensors), in the inputs' dtype.

    Exactness: when the coefficients select one input, its bits are copied (so alpha 0 and 1 reproduce the parents bit
    for bit, NaN payloads included); with two inputs torch.lerp is used, which is exact at both ends and rounds once.

    Args:
        inputs: tensors of one shape and one floating dtype.
        coeffs: one weight per input.
        out: optional destination of the same shape and dtype (may not alias an input).
    """
    if len(inputs) != len(coeffs):
        raise AssertionError("one coefficient per input")
    chosen = copied_input(coeffs)
    if chosen is not None:
        return inputs[chosen] if out is None else out.copy_(inputs[chosen])
    if len(inputs) == 2 and coeffs[0] == 1.0 - coeffs[1]:
        weight = coeffs[1]
        if out is None:
            return torch.lerp(inputs[0], inputs[1], weight)
        return torch.lerp(inputs[0], inputs[1], weight, out=out)
    compute = torch.float64 if inputs[0].dtype == torch.float64 else torch.float32
    acc = inputs[0].to(compute) * coeffs[0]
    for x, c in zip(inputs[1:], coeffs[1:]):
        acc.add_(x.to(compute), alpha=c)
    if out is None:
        return acc.to(inputs[0].dtype)
    return out.copy_(acc)


def _entry_header(name: str, tensor: torch.Tensor) -> bytes:
    """What the fingerprint records about one tensor besides its bytes."""
    return f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode()


def _host_bytes(tensor: torch.Tensor) -> memoryview:
    """A tensor's bytes as a flat host buffer (a device tensor is copied to the host first)."""
    host = tensor.detach().contiguous().cpu()
    return memoryview(host.reshape(-1).view(torch.uint8).numpy()).cast("B")


def fingerprint_tensors(named: Mapping[str, torch.Tensor]) -> str:
    """A sha256 over names, dtypes, shapes and bytes: equal fingerprints mean bit-identical weights.

    Each tensor's bytes are hashed on its own, in parallel (hashlib releases the GIL), and the per-tensor digests are
    hashed in name order: a 1B-parameter model is fingerprinted at about cores x 1.5 GB/s instead of 1.5 GB/s.
    `ContentHasher` computes the same value in small steps.
    """
    names = sorted(named)

    def digest(name: str) -> bytes:  # the (device -> host) copy is made here, one tensor per worker at a time
        return hashlib.sha256(_host_bytes(named[name])).digest()

    if sum(t.numel() * t.element_size() for t in named.values()) < _PARALLEL_HASH_BYTES:
        digests = [digest(n) for n in names]
    else:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            digests = list(pool.map(digest, names))
    h = hashlib.sha256()
    for name, d in zip(names, digests):
        h.update(_entry_header(name, named[name]))
        h.update(d)
    return h.hexdigest()


class ContentHasher:
    """`fingerprint_tensors` in steps of a bounded size, so a worker can stop between two steps for other work.

    The tensors must not change until `done`; a step copies at most `step_bytes` of one tensor to the host.
    """

    def __init__(self, named: Mapping[str, torch.Tensor], step_bytes: int = 64 << 20):
        self._named = dict(named)
        self._names = sorted(self._named)
        self._step_elements = {n: max(1, step_bytes // max(1, t.element_size())) for n, t in self._named.items()}
        self._outer = hashlib.sha256()
        self._index = 0
        self._offset = 0  # elements of the current tensor hashed so far
        self._inner = hashlib.sha256()
        self.done = not self._names
        self._digest = self._outer.hexdigest() if self.done else ""

    def step(self) -> bool:
        """Hash the next piece; returns True once every tensor is hashed (then `hexdigest` is final)."""
        if self.done:
            return True
        name = self._names[self._index]
        flat = self._named[name].detach().reshape(-1)
        end = min(flat.numel(), self._offset + self._step_elements[name])
        if end > self._offset:
            self._inner.update(_host_bytes(flat[self._offset:end]))
        self._offset = end
        if end >= flat.numel():
            self._outer.update(_entry_header(name, self._named[name]))
            self._outer.update(self._inner.digest())
            self._index, self._offset, self._inner = self._index + 1, 0, hashlib.sha256()
            if self._index == len(self._names):
                self.done, self._digest = True, self._outer.hexdigest()
        return self.done

    def hexdigest(self) -> str:
        """The fingerprint ('' until every step ran)."""
        return self._digest
