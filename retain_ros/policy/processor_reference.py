"""Pre- and post-processing of the reference VLA: robot units <-> the model's normalised tensors.

Inputs: camera images are resized with padding to the model's image size (aspect ratio kept, black borders, as
openpi's `resize_with_pad`) and scaled to [-1, 1]; the state (7 joint positions + gripper) and the actions are
normalised with the mean / std stored in the checkpoint (normalization.json). Outputs: actions are unnormalised, the
joint velocities clipped and the gripper binarised (DROID convention, see `ActionSpace.clip`).

Finetuned checkpoints keep the statistics of the checkpoint they start from, so a base and its finetuned copies share
one normalisation and their weights can be interpolated (the merge copies the base's normalization.json).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from retain_ros.errors import ConfigError
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.interface import ActionSpace, Observation
from retain_ros.policy.tokenizer import WordTokenizer

STATS_NAME = "normalization.json"
_MIN_STD = 1e-3


@dataclass(frozen=True)
class NormalizationStats:
    """Per-dimension mean and std of the state (joints + gripper) and of the actions.

    Attributes:
        state_mean: (state_dim,) mean of [joint positions (rad), gripper position].
        state_std: (state_dim,) their std (floored at 1e-3).
        action_mean: (action_dim,) mean of the DROID actions.
        action_std: (action_dim,) their std (floored at 1e-3).
    """

    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    @classmethod
    def from_data(cls, states: np.ndarray, actions: np.ndarray) -> NormalizationStats:
        """Compute the statistics of (N, state_dim) states and (N, action_dim) actions."""
        states, actions = np.asarray(states, np.float64), np.asarray(actions, np.float64)
        return cls(states.mean(0), np.maximum(states.std(0), _MIN_STD), actions.mean(0),
                   np.maximum(actions.std(0), _MIN_STD))

    @classmethod
    def identity(cls, state_dim: int, action_dim: int) -> NormalizationStats:
        """Mean 0, std 1 everywhere (untrained models and tests)."""
        return cls(np.zeros(state_dim), np.ones(state_dim), np.zeros(action_dim), np.ones(action_dim))

    def save(self, directory: str | Path) -> Path:
        """Write normalization.json (floats round-trip exactly)."""
        path = Path(directory) / STATS_NAME
        data = {k: np.asarray(getattr(self, k), np.float64).tolist()
                for k in ("state_mean", "state_std", "action_mean", "action_std")}
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path, state_dim: int, action_dim: int) -> NormalizationStats:
        """Read normalization.json and check its sizes.

        Raises:
            ConfigError: missing, malformed, or sizes that do not fit the model.
        """
        path = Path(directory) / STATS_NAME
        try:
            data = json.loads(path.read_text())
            keys = ("state_mean", "state_std", "action_mean", "action_std")
            stats = cls(*(np.asarray(data[k], np.float64) for k in keys))
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing; the checkpoint needs its normalisation statistics") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path} is not a valid statistics file ({exc!r})") from None
        sizes = (state_dim, state_dim, action_dim, action_dim)
        for name, value, size in zip(("state_mean", "state_std", "action_mean", "action_std"),
                                     (stats.state_mean, stats.state_std, stats.action_mean, stats.action_std), sizes):
            if value.shape != (size,) or not np.all(np.isfinite(value)):
                raise ConfigError(f"{path}: {name} has shape {value.shape} (or non-finite values); the model needs "
                                  f"({size},)")
        return stats


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a uint8 HxWx3 image to fit (height, width) keeping its aspect ratio; pad the rest with black.

    Returns:
        uint8 (height, width, 3).
    """
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1)
    resized = x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    out = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)
    return x.movedim(-1, -3)


class ReferenceProcessor:
    """Turns observations into model inputs and model outputs into actions, with the checkpoint's statistics."""

    def __init__(self, config: ReferenceVLAConfig, stats: NormalizationStats, tokenizer: WordTokenizer):
        """Bind the model's sizes, the normalisation statistics and the tokenizer."""
        if tokenizer.vocab_size != config.vocab_size or tokenizer.max_length != config.max_text_length:
            raise ConfigError(f"tokenizer (vocab {tokenizer.vocab_size}, length {tokenizer.max_length}) does not fit "
                              f"the model (vocab {config.vocab_size}, length {config.max_text_length})")
        self.config = config
        self.stats = stats
        self.tokenizer = tokenizer
        self._state_mean = torch.tensor(stats.state_mean, dtype=torch.float32)
        self._state_std = torch.tensor(stats.state_std, dtype=torch.float32)
        self._action_mean = torch.tensor(stats.action_mean, dtype=torch.float32)
        self._action_std = torch.tensor(stats.action_std, dtype=torch.float32)

    @property
    def action_space(self) -> ActionSpace:
        """The output action space."""
        return self.config.action_space

    def normalize_state(self, state: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(..., state_dim) robot units -> normalised float32."""
        return (torch.as_tensor(state, dtype=torch.float32) - self._state_mean) / self._state_std

    def normalize_actions(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(..., action_dim) DROID actions -> normalised float32."""
        return (torch.as_tensor(actions, dtype=torch.float32) - self._action_mean) / self._action_std

    def unnormalize_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Normalised (..., action_dim) -> DROID actions, clipped and binarised as the action space says."""
        raw = actions.detach().float().cpu() * self._action_std + self._action_mean
        return self.action_space.clip(raw.numpy())

    def camera_stack(self, images: Mapping[str, np.ndarray]) -> np.ndarray:
        """Resize-with-pad each camera of the config and stack them: uint8 (C, H, W, 3)."""
        h, w = self.config.image_size
        return np.stack([resize_with_pad(images[name], h, w) for name in self.config.camera_names])

    def batch(self, images: np.ndarray, states: np.ndarray, instructions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Model inputs for B samples.

        Args:
            images: uint8 (B, C, H, W, 3) already at the model's image size.
            states: (B, state_dim) joint positions + gripper, robot units.
            instructions: B instruction strings.

        Returns:
            images (B, C, 3, H, W) in [-1, 1], token_ids, token_mask, state (normalised).
        """
        ids, mask = self.tokenizer.encode_batch(instructions)
        return {"images": images_to_tensor(images), "token_ids": torch.from_numpy(ids),
                "token_mask": torch.from_numpy(mask), "state": self.normalize_state(states)}

    def observation_inputs(self, obs: Observation) -> dict[str, torch.Tensor]:
        """Model inputs (batch of one) for a validated observation."""
        state = np.concatenate([np.asarray(obs.joint_positions, np.float64), [float(obs.gripper_position)]])
        return self.batch(self.camera_stack(obs.images)[None], state[None], [obs.instruction])
