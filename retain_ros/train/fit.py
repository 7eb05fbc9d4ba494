"""How well a checkpoint imitates demonstrations offline: arm error in rad/s, overall and per phase of the episode.

The closed loop tolerates about 0.05 rad/s of error on these tasks (the expert with that much correlated noise still
succeeds; docs/policy.md), so this number, on training and on held-out episodes, says whether a model underfits,
overfits or is good enough before any rollout is run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from retain_ros.droid_action import arm_velocities_rad_s
from retain_ros.errors import ConfigError
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy.reference_policy import ReferencePolicy
from retain_ros.train.data import DemoSet, load_demos
from retain_ros.train.loop import BatchSampler

PHASES = ("start", "middle", "end")  # episode thirds


@dataclass
class FitError:
    """Offline imitation error of one checkpoint on one set of episodes.

    Attributes:
        arm_rmse_rad_s: RMS error of the first action's arm part, in rad/s.
        chunk_rmse_rad_s: RMS error over the whole chunk's arm part, in rad/s.
        gripper_accuracy: share of first actions whose binarised gripper matches the label.
        by_phase: phase name -> arm_rmse_rad_s over the samples in that third of their episodes.
        samples: samples scored.
        episodes: episodes they come from.
    """

    arm_rmse_rad_s: float
    chunk_rmse_rad_s: float
    gripper_accuracy: float
    by_phase: dict[str, float]
    samples: int
    episodes: int

    def line(self) -> str:
        """One line for logs and tables."""
        phases = " / ".join(f"{self.by_phase[p]:.3f}" for p in PHASES)
        return (f"arm {self.arm_rmse_rad_s:.3f} rad/s (chunk {self.chunk_rmse_rad_s:.3f}; by third {phases}), "
                f"gripper {self.gripper_accuracy:.2f}, {self.samples} samples / {self.episodes} episodes")


def predict_chunks(policy: ReferencePolicy, demos: DemoSet, index: np.ndarray, batch_size: int = 128,
                   noise_scale: float | None = None) -> np.ndarray:
    """The policy's chunks (len(index), H, D) for the given samples, drawn as `predict` draws them.

    `noise_scale` overrides the checkpoint's sampler noise scale (None keeps it).
    """
    noise = policy.sampling_noise(noise_scale)
    out = []
    for start in range(0, len(index), batch_size):
        part = index[start:start + batch_size]
        inputs = policy.processor.batch(demos.images[part], demos.states[part], [demos.instructions[i] for i in part])
        with torch.no_grad():
            actions = policy.model.sample(inputs["images"], inputs["token_ids"], inputs["token_mask"],
                                          inputs["state"], noise.expand(len(part), -1, -1).contiguous())
        out.append(policy.processor.unnormalize_actions(actions))
    return np.concatenate(out)


def fit_error(checkpoint: str | Path, data: Sequence[str | Path], max_episodes: int | None = None,
              skip_episodes: int = 0, stride: int = 2, noise_scale: float | None = None) -> FitError:
    """Score a checkpoint's chunks against the expert's labels on recorded episodes.

    Args:
        checkpoint: reference-VLA checkpoint directory.
        data: dataset directories (retain-sim collect).
        max_episodes: at most this many successful episodes per directory.
        skip_episodes: skip this many successful episodes per directory first (e.g. the ones trained on).
        stride: score every `stride`-th step.
        noise_scale: sampler noise scale to score with (None: the checkpoint's own).

    Raises:
        ConfigError: unreadable checkpoint or data, or a stride below 1.
    """
    if stride < 1:
        raise ConfigError(f"stride={stride} must be >= 1")
    policy = ReferencePolicy.from_pretrained(checkpoint)
    space = policy.config.action_space
    demos = load_demos(data, policy.config, max_episodes, skip_episodes)
    index = np.arange(0, len(demos), stride)
    predicted = predict_chunks(policy, demos, index, noise_scale=noise_scale)
    labels = space.clip(demos.action_chunks[index])
    g = space.gripper_index
    to_rad_s = lambda a: arm_velocities_rad_s(np.delete(a, g, axis=-1), space.kind, policy.config.dt_s)  # noqa: E731
    error = to_rad_s(predicted) - to_rad_s(labels)
    first = np.mean(error[:, 0] ** 2, axis=-1)
    phase_of = np.minimum((demos.phases[index] * len(PHASES)).astype(int), len(PHASES) - 1)
    by_phase = {name: float(np.sqrt(first[phase_of == k].mean())) if np.any(phase_of == k) else float("nan")
                for k, name in enumerate(PHASES)}
    return FitError(float(np.sqrt(first.mean())), float(np.sqrt(np.mean(error ** 2))),
                    float(np.mean(predicted[:, 0, g] == labels[:, 0, g])), by_phase, len(index), demos.episodes)


def alpha_path_loss(base: str | Path, finetuned: str | Path, data: Sequence[str | Path], alphas: Sequence[float],
                    samples: int = 256, seed: int = 0, max_episodes: int | None = None,
                    hold: Mapping[str, float] | None = None) -> list[tuple[float, float]]:
    """Flow-matching loss of RETAIN merges along the path base (alpha 0) -> finetuned (alpha 1) on one fixed batch.

    Merges help only while both ends sit in one low-loss basin: a loss at some alpha above both ends (a barrier)
    means the finetuning left the base's basin, usually from too high a learning rate.

    Args:
        base: pretrained checkpoint.
        finetuned: a checkpoint finetuned from `base`.
        data: dataset directories to draw the batch from.
        alphas: merge weights to score.
        samples: batch size (drawn once; the same samples, flow times and noise for every alpha).
        seed: seed of the batch and the noise.
        max_episodes: at most this many episodes per directory.
        hold: parameter groups (vision, language, action) kept at their own alpha while the others move along the
            path: a modality-specific merge.

    Returns:
        (alpha, loss) pairs in the order given.

    Raises:
        ConfigError: unreadable or unmergeable checkpoints, unreadable data.
    """
    policy = ReferencePolicy.from_pretrained(base)
    merger = ResidentMerger.from_checkpoints(base, [finetuned], groups="reference")
    demos = load_demos(data, policy.config, max_episodes)
    batch = BatchSampler(demos, policy, torch.Generator().manual_seed(seed)).draw(samples, augment=False)
    out = []
    for alpha in alphas:
        policy.load_merged(merger.merge({"default": float(alpha), **(hold or {})}).tensors)
        with torch.no_grad():
            loss = policy.model.loss(batch["images"], batch["token_ids"], batch["token_mask"], batch["state"],
                                     batch["actions"], torch.Generator().manual_seed(seed + 1))
        out.append((float(alpha), float(loss)))
    return out


def plot_alpha_path(curves: Mapping[str, Sequence[tuple[float, float]]], out: str | Path) -> Path:
    """Draw loss vs alpha for each labelled path (from `alpha_path_loss`) into a PNG file; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, path in curves.items():
        ax.plot([a for a, _ in path], [loss for _, loss in path], "o-", label=label)
    ax.set_xlabel("alpha (0 = base, 1 = finetuned)")
    ax.set_ylabel("flow-matching loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
