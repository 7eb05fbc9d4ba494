"""Errors of predicted chunks against executed actions: per joint and horizon step, per episode, bootstrapped.

Inputs are stacks of predictions and targets, (N observations, H steps, J joints + 1 gripper), with NaN where the
bag says nothing about the executed action (e.g. beyond its end). Arm errors are squared and absolute differences;
the gripper is scored as open/closed agreement after binarising both at 0.5 (DROID: 0 open .. 1 closed).

Aggregates over several episodes pool every (observation, step, joint) entry; their confidence intervals come from a
percentile bootstrap that resamples whole episodes (observations of one episode are correlated), or observations when
there is only one episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GRIPPER_THRESHOLD = 0.5


@dataclass
class ErrorStack:
    """Predictions and targets of one episode at one alpha.

    Attributes:
        predictions: (N, H, J + 1), gripper last.
        targets: (N, H, J + 1), NaN = unknown.
        stamps_ns: (N,) observation times.
    """

    predictions: np.ndarray
    targets: np.ndarray
    stamps_ns: np.ndarray

    @classmethod
    def stack(cls, predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], stamps_ns: Sequence[int],
              horizon: int, width: int) -> ErrorStack:
        """Stack per-observation (H, J + 1) arrays (an empty list gives N = 0)."""
        shape = (len(predictions), horizon, width)
        p = np.array(predictions, dtype=np.float64).reshape(shape)
        t = np.array(targets, dtype=np.float64).reshape(shape)
        return cls(p, t, np.asarray(stamps_ns, dtype=np.int64))

    def unit_sums(self) -> np.ndarray:
        """Sufficient statistics per observation (what the bootstrap resamples).

        Returns:
            (N, 5): sum of squared arm errors, sum of absolute arm errors, arm entries, gripper agreements, gripper
            entries.
        """
        diff = self.predictions[..., :-1] - self.targets[..., :-1]
        valid = np.isfinite(diff)
        d = np.where(valid, diff, 0.0)
        g_ok, g_valid = self._gripper()
        return np.stack([(d ** 2).sum(axis=(1, 2)), np.abs(d).sum(axis=(1, 2)), valid.sum(axis=(1, 2)),
                         (g_ok & g_valid).sum(axis=1), g_valid.sum(axis=1)], axis=1).astype(np.float64)

    def _gripper(self) -> tuple[np.ndarray, np.ndarray]:
        target = self.targets[..., -1]
        valid = np.isfinite(target)
        agree = (self.predictions[..., -1] > GRIPPER_THRESHOLD) == (np.nan_to_num(target) > GRIPPER_THRESHOLD)
        return agree, valid

    def summary(self) -> dict:
        """Pooled metrics of this stack (see `summarize`), plus per-step and per-joint breakdowns."""
        diff = self.predictions[..., :-1] - self.targets[..., :-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            count_hj = np.isfinite(diff).sum(axis=0)
            sq = np.where(np.isfinite(diff), diff ** 2, 0.0)
            ab = np.abs(np.where(np.isfinite(diff), diff, 0.0))
            g_ok, g_valid = self._gripper()
            out = summarize(self.unit_sums().sum(axis=0, keepdims=True))
            out.update(
                per_step_joint_mse=_ratio(sq.sum(axis=0), count_hj),
                per_step_joint_mae=_ratio(ab.sum(axis=0), count_hj),
                per_step_mse=_ratio(sq.sum(axis=(0, 2)), count_hj.sum(axis=1)),
                per_step_mae=_ratio(ab.sum(axis=(0, 2)), count_hj.sum(axis=1)),
                per_joint_mse=_ratio(sq.sum(axis=(0, 1)), count_hj.sum(axis=0)),
                per_joint_mae=_ratio(ab.sum(axis=(0, 1)), count_hj.sum(axis=0)),
                gripper_accuracy_per_step=_ratio((g_ok & g_valid).sum(axis=0), g_valid.sum(axis=0)))
        return out


def _ratio(num: np.ndarray, den: np.ndarray) -> list:
    """Return num / den as nested lists, None where den == 0 (JSON has no NaN)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(den > 0, np.asarray(num, dtype=np.float64) / np.maximum(den, 1), np.nan)
    return _json(value)


def _json(value: np.ndarray):
    if np.ndim(value) == 0:
        v = float(value)
        return v if np.isfinite(v) else None
    return [_json(v) for v in value]


def summarize(units: np.ndarray) -> dict:
    """Pooled MSE, MAE and gripper accuracy of rows of `unit_sums` (None where nothing was comparable)."""
    total = np.asarray(units, dtype=np.float64).reshape(-1, 5).sum(axis=0)
    return {"mse": float(total[0] / total[2]) if total[2] else None,
            "mae": float(total[1] / total[2]) if total[2] else None,
            "gripper_accuracy": float(total[3] / total[4]) if total[4] else None,
            "entries": int(total[2]), "gripper_entries": int(total[4])}


def bootstrap(units: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Percentile-bootstrap confidence intervals of the pooled metrics.

    Args:
        units: (U, 5) sufficient statistics per resampling unit (episodes, or observations of a single episode).
        resamples: bootstrap resamples.
        confidence: interval coverage.
        seed: seed of the resampling (the same data give the same interval).

    Returns:
        {'mse_ci': [lo, hi], 'mae_ci': [...], 'gripper_accuracy_ci': [...]} (None where undefined).
    """
    units = np.asarray(units, dtype=np.float64).reshape(-1, 5)
    if len(units) == 0:
        return {"mse_ci": None, "mae_ci": None, "gripper_accuracy_ci": None}
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(units), size=(resamples, len(units)))
    sums = units[picks].sum(axis=1)  # (B, 5)
    lo_q, hi_q = 50 * (1 - confidence), 50 * (1 + confidence)
    out = {}
    for name, num, den in (("mse", 0, 2), ("mae", 1, 2), ("gripper_accuracy", 3, 4)):
        ok = sums[:, den] > 0
        if not ok.any():
            out[f"{name}_ci"] = None
            continue
        values = sums[ok, num] / sums[ok, den]
        out[f"{name}_ci"] = [float(np.percentile(values, lo_q)), float(np.percentile(values, hi_q))]
    return out


def aggregate(stacks: Sequence[ErrorStack], resamples: int = 1000, seed: int = 0) -> dict:
    """Pooled metrics over episodes with bootstrap CIs and the per-step / per-joint breakdowns.

    Args:
        stacks: one per episode (same horizon and width).
        resamples: bootstrap resamples.
        seed: bootstrap seed.
    """
    stacks = [s for s in stacks if len(s.predictions)]
    if not stacks:
        return {**summarize(np.zeros((0, 5))), **bootstrap(np.zeros((0, 5))), "bootstrap_unit": None,
                "observations": 0}
    if len(stacks) >= 2:
        units, unit = np.stack([s.unit_sums().sum(axis=0) for s in stacks]), "episode"
    else:
        units, unit = stacks[0].unit_sums(), "observation"
    pooled = ErrorStack(np.concatenate([s.predictions for s in stacks]), np.concatenate([s.targets for s in stacks]),
                        np.concatenate([s.stamps_ns for s in stacks]))
    return {**pooled.summary(), **bootstrap(units, resamples, seed=seed), "bootstrap_unit": unit,
            "observations": int(len(pooled.predictions))}
