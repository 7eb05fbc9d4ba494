"""A LeRobot checkpoint's normalisation statistics, read without LeRobot: what its actions are, and whether two agree.

LeRobot (>= 0.4) saves its processors as `policy_preprocessor.json` / `policy_postprocessor.json`, each step that
normalises naming a `state_file` of tensors `<feature>.<stat>` (`action.mean`, `action.q01`, `observation.state.std`,
...). Two things follow from them that a tiny test model cannot show:

- **The action type.** DROID velocity policies output normalised velocities (every joint's range holds 0, |a| <= 1);
  joint-position policies output FR3 joint angles, and joints 4 and 6 never cross 0 (FR3: joint 4 in [-3.04, -0.15],
  joint 6 in [0.54, 4.52] rad). A checkpoint whose statistics say "positions" executed as velocities would have its
  targets clipped to +-1 and integrated: `check_action_kind` refuses that at load.
- **Which statistics an alpha runs through.** Every merge runs through one checkpoint's processors. LeRobot's
  `lerobot-train` saves the finetuning dataset's statistics with the finetuned checkpoint, so where they differ from
  the base's, alpha = 1 is not the finetuned policy unless its own statistics are used (`stats_difference`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retain_ros.droid_action import JOINT_POSITION
from retain_ros.errors import ConfigError

PROCESSOR_FILES = ("policy_preprocessor.json", "policy_postprocessor.json")
STATS_CHOICES = ("base", "finetuned")
ACTION = "action"
_POSITION, _VELOCITY = "joint positions", "joint velocities"


def read_stats(checkpoint: str | Path) -> dict[str, np.ndarray]:
    """Every normalisation tensor the checkpoint's processors load, `<feature>.<stat>` -> array (postprocessor last).

    Raises:
        ConfigError: a processor file or a state file it names cannot be read.
    """
    from safetensors.numpy import load_file

    path, stats = Path(checkpoint), {}
    for name in PROCESSOR_FILES:
        try:
            steps = json.loads((path / name).read_text()).get("steps", [])
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path / name} cannot be read ({exc}); a LeRobot checkpoint saved by LeRobot >= 0.4 "
                              "has it next to config.json") from None
        for step in steps:
            state_file = step.get("state_file") if isinstance(step, dict) else None
            if state_file:
                try:
                    stats.update(load_file(str(path / state_file)))
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"{path / state_file}, the statistics {name} names, cannot be read "
                                      f"({exc})") from None
    return stats


def action_range(stats: dict[str, np.ndarray], dims: int = 7) -> tuple[np.ndarray, np.ndarray] | None:
    """The range of the first `dims` action numbers: the 1 / 99 % quantiles where saved, else min / max."""
    for low, high in (("q01", "q99"), ("min", "max")):
        lo, hi = stats.get(f"{ACTION}.{low}"), stats.get(f"{ACTION}.{high}")
        if lo is not None and hi is not None and len(lo) >= dims and len(hi) >= dims:
            return np.asarray(lo[:dims], float), np.asarray(hi[:dims], float)
    return None


def action_kind_evidence(stats: dict[str, np.ndarray]) -> tuple[str | None, str]:
    """What the action statistics say: (`joint positions` | `joint velocities` | None, the evidence in words)."""
    span = action_range(stats)
    if span is None:
        return None, "no action min / max or quantiles among the statistics"
    lo, hi = span
    shown = ", ".join(f"j{i + 1} [{a:.2f}, {b:.2f}]" for i, (a, b) in enumerate(zip(lo, hi)))
    if hi[3] < -0.05 and lo[5] > 0.3:  # FR3 joint 4 always negative, joint 6 always positive: angles
        return _POSITION, f"joint 4 never reaches 0 and joint 6 stays positive, as FR3 joint angles do ({shown})"
    if (lo < 0).all() and (hi > 0).all() and (np.maximum(-lo, hi) <= 6.0).all():
        return _VELOCITY, f"every joint's range holds 0 ({shown})"
    return None, f"neither pattern ({shown})"


def check_action_kind(stats: dict[str, np.ndarray], kind: str, source: str) -> None:
    """Refuse a configured action kind the statistics contradict; ambiguous statistics pass.

    Raises:
        ConfigError: one line naming what the statistics say, the configured `lerobot_action`, and the fix.
    """
    says, evidence = action_kind_evidence(stats)
    expects = _POSITION if kind == JOINT_POSITION else _VELOCITY
    if says is None or says == expects:
        return
    fix = ("lerobot_action: joint_position (execution_mode auto then executes whole chunks)" if says == _POSITION
           else "lerobot_action: droid_joint_velocity (DROID-normalised) or joint_velocity (rad/s)")
    raise ConfigError(f"{source}: its action statistics look like {says}, but lerobot_action is '{kind}' "
                      f"({expects}); {evidence}. Fix: set {fix}")


def stats_difference(base: dict[str, np.ndarray], other: dict[str, np.ndarray], rtol: float = 1e-5,
                     atol: float = 1e-8) -> str | None:
    """Where two checkpoints' statistics differ (the largest difference, named), or None when they agree.

    NaN agrees only with NaN.
    """
    missing = sorted(set(base) ^ set(other))
    if missing:
        return f"{missing[0]} is in only one of them"
    worst, where = 0.0, ""
    for key in sorted(base):
        a, b = np.asarray(base[key], float), np.asarray(other[key], float)
        if a.shape != b.shape:
            return f"{key} has shape {a.shape} in one and {b.shape} in the other"
        nan = np.isnan(a) != np.isnan(b)
        if nan.any():
            i = int(np.argmax(nan))
            return f"{key}[{i}] is {a.flat[i]:.4g} in one and {b.flat[i]:.4g} in the other"
        excess = np.nan_to_num(np.abs(a - b) - rtol * np.maximum(np.abs(a), np.abs(b)) - atol, nan=-1.0)
        if excess.size and excess.max() > worst:
            i = int(np.argmax(excess))
            worst, where = float(excess.max()), f"{key}[{i}] is {a.flat[i]:.4g} in one and {b.flat[i]:.4g} in the other"
    return where or None


def processor_files(checkpoint: str | Path) -> list[Path]:
    """The processor files of a LeRobot checkpoint and the statistics files they name (empty: not LeRobot's)."""
    path = Path(checkpoint)
    files = []
    for name in PROCESSOR_FILES:
        if (path / name).is_file():
            files.append(path / name)
            try:
                steps = json.loads((path / name).read_text()).get("steps", [])
            except (OSError, ValueError, AttributeError):
                continue
            files += [path / s["state_file"] for s in steps if isinstance(s, dict) and s.get("state_file")]
    return files


def statistics_source(base: str | Path, finetuned: list[str | Path], choice: str,
                      how_to_choose: str) -> tuple[Path, dict[str, str] | None]:
    """Whose processors (and statistics) a merge of these checkpoints runs through, and the record of the choice.

    Args:
        base: the pretrained checkpoint.
        finetuned: the finetuned checkpoints.
        choice: '' (they must agree), 'base' or 'finetuned' (the finetuned checkpoints', which must agree).
        how_to_choose: how the user makes the choice, for the error (`--stats base|finetuned`, a parameter).

    Returns:
        (checkpoint whose processors to use, {'choice', 'source', 'differ'}); (base, None) for checkpoints without
        LeRobot processors.

    Raises:
        ConfigError: differing statistics and no choice, an unknown choice, or finetuned checkpoints that disagree.
    """
    base = Path(base)
    if not processor_files(base):
        return base, None
    if choice not in ("", *STATS_CHOICES):
        raise ConfigError(f"statistics choice '{choice}' is unknown; use {' or '.join(STATS_CHOICES)}")
    own = [Path(f) for f in finetuned if processor_files(f)]
    base_stats = read_stats(base)
    differ = {f: why for f in own if (why := stats_difference(base_stats, read_stats(f)))}
    if choice == "finetuned" and own:
        first = read_stats(own[0])
        for other in own[1:]:
            why = stats_difference(first, read_stats(other))
            if why:
                raise ConfigError(f"the finetuned checkpoints {own[0]} and {other} have different normalisation "
                                  f"statistics ({why}); one merge runs through one set: use base, or finetune them "
                                  "with the same statistics")
        source = own[-1]
    elif choice == "base" or not differ:
        source = base
    else:
        ft, why = next(iter(differ.items()))
        raise ConfigError(f"the normalisation statistics of {ft} differ from the base's ({why}); every alpha runs "
                          f"through one set. Choose with {how_to_choose}: finetuned (LeRobot's lerobot-train saved "
                          "the finetuning data's, so alpha = 1 is the finetuned policy) or base (what the base was "
                          "trained with, as openpi's DROID finetunes keep)")
    detail = "; ".join(f"{f}: {why}" for f, why in differ.items())
    return source, {"choice": choice or "shared", "source": str(source), "differ": detail}
