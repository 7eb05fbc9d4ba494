"""A value checkpoint on disk and its use at deployment: load, check against a policy, score candidate chunks.

Checkpoint directory (written by `retain-train value`): config.json (type `retain_value_function`, every size),
model.safetensors, normalization.json (state and action statistics, the format of the reference VLA's),
tokenizer.json (the instruction vocabulary), training.json (what it learnt from and its held-out calibration).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import Observation, PolicySpec
from retain_ros.policy.processor_reference import NormalizationStats, images_to_tensor, resize_with_pad
from retain_ros.policy.reference_policy import WEIGHTS_NAME, check_state_dict, read_weights
from retain_ros.policy.registry import CONFIG_NAME, read_config
from retain_ros.policy.tokenizer import WordTokenizer
from retain_ros.steering.value_model import ValueConfig, ValueNetwork

TRAINING_NAME = "training.json"


class ValueFunction:
    """A trained Q(observation, executed chunk, instruction) in eval mode.

    Args:
        config: sizes and conventions.
        stats: state / action normalisation.
        tokenizer: the instruction vocabulary.
        network: the module (a fresh random one when None).
        source: where it was loaded from (messages and ~/status).
    """

    def __init__(self, config: ValueConfig, stats: NormalizationStats, tokenizer: WordTokenizer,
                 network: ValueNetwork | None = None, source: str = ""):
        if tokenizer.vocab_size != config.vocab_size or tokenizer.max_length != config.max_text_length:
            raise ConfigError(f"{source or 'value function'}: its tokenizer (vocabulary {tokenizer.vocab_size}, "
                              f"length {tokenizer.max_length}) does not fit its config (vocabulary "
                              f"{config.vocab_size}, length {config.max_text_length}); tokenizer.json and config.json "
                              "must come from the same retain-train value run")
        self.config, self.stats, self.tokenizer, self.source = config, stats, tokenizer, source
        self.network = (network or ValueNetwork(config)).eval().requires_grad_(False)
        self._state_mean = torch.tensor(stats.state_mean, dtype=torch.float32)
        self._state_std = torch.tensor(stats.state_std, dtype=torch.float32)
        self._action_mean = torch.tensor(stats.action_mean, dtype=torch.float32)
        self._action_std = torch.tensor(stats.action_std, dtype=torch.float32)

    # -- checkpoints ---------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ValueFunction:
        """Load a value checkpoint directory.

        Raises:
            ConfigError: a missing file, another checkpoint type (a policy), or weights that do not fit the config;
                one line naming the file and the fix.
        """
        path = Path(directory)
        data = read_config(path)
        if data.get("type") != ValueConfig.type:
            raise ConfigError(f"{path} is a '{data.get('type')}' checkpoint, not a value function: give a directory "
                              "written by retain-train value (config type retain_value_function)")
        config = ValueConfig.from_dict(data)
        stats = NormalizationStats.load(path, config.state_dim, config.action_dim)
        tokenizer = WordTokenizer.load(path)
        tensors = read_weights(path)
        network = ValueNetwork(config)
        check_state_dict(network.state_dict(), tensors, str(path / WEIGHTS_NAME))
        network.load_state_dict({k: v.float() for k, v in tensors.items()})
        return cls(config, stats, tokenizer, network, str(path))

    def save_pretrained(self, directory: str | Path, training: Mapping | None = None) -> Path:
        """Write the checkpoint (and `training`, a JSON-able summary, as training.json)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=1) + "\n")
        state = {n: t.detach().contiguous() for n, t in self.network.state_dict().items()}
        save_file(state, path / WEIGHTS_NAME, metadata={"format": "pt"})
        (path / WEIGHTS_NAME).chmod(0o644)
        self.stats.save(path)
        self.tokenizer.save(path)
        if training is not None:
            (path / TRAINING_NAME).write_text(json.dumps(training, indent=1) + "\n")
        return path

    def training_summary(self) -> dict:
        """training.json of the checkpoint ({} when absent)."""
        try:
            return json.loads((Path(self.source) / TRAINING_NAME).read_text())
        except (OSError, ValueError):
            return {}

    # -- deployment ------------------------------------------------------------------------------------------------
    def check_fits(self, spec: PolicySpec) -> None:
        """Check that this value function can score the chunks of a policy with `spec` (`check_fits`)."""
        check_fits(self.config, spec, self.source)

    def observation_inputs(self, obs: Observation) -> dict[str, torch.Tensor]:
        """The network's inputs (batch of one) for an observation."""
        h, w = self.config.image_size
        images = np.stack([resize_with_pad(obs.images[c], h, w) for c in self.config.camera_names])
        state = np.concatenate([np.asarray(obs.joint_positions, np.float64), [float(obs.gripper_position)]])
        ids, mask = self.tokenizer.encode(obs.instruction)
        return {"images": images_to_tensor(images[None]), "token_ids": torch.from_numpy(ids[None]),
                "token_mask": torch.from_numpy(mask[None]), "state": self.normalize_state(state[None])}

    def normalize_state(self, state: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(..., state_dim) robot units -> normalised float32."""
        return (torch.as_tensor(state, dtype=torch.float32) - self._state_mean) / self._state_std

    def normalize_actions(self, chunks: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(..., H, action_dim) chunks in the policy's action space -> the normalised executed part."""
        executed = torch.as_tensor(np.asarray(chunks)[..., : self.config.executed_steps, :], dtype=torch.float32)
        return (executed - self._action_mean) / self._action_std

    def score(self, obs: Observation, chunks: np.ndarray) -> np.ndarray:
        """Q of each candidate chunk (K, H, D) for one observation: (K,) float64.

        Raises:
            ConfigError: an observation without the cameras it reads, or chunks shorter than executed_steps.
        """
        missing = [c for c in self.config.camera_names if c not in obs.images]
        if missing:
            raise ConfigError(f"the value function reads cameras {missing} the observation lacks")
        chunks = np.asarray(chunks)
        cfg = self.config
        if chunks.ndim != 3 or chunks.shape[1] < cfg.executed_steps or chunks.shape[2] != cfg.action_dim:
            raise ConfigError(f"value function: chunks have shape {chunks.shape}; it needs (K, >= "
                              f"{self.config.executed_steps}, {self.config.action_dim})")
        inputs = self.observation_inputs(obs)
        with torch.no_grad():
            features = self.network.encode(**inputs)
            q = self.network.q(features, self.normalize_actions(chunks)[None])
        return q[0].double().numpy()


def check_fits(config: ValueConfig, spec: PolicySpec, source: str = "") -> None:
    """Check that a value function of `config` can score the chunks of a policy with `spec`.

    Raises:
        ConfigError: one line naming the mismatch (cameras, action dimension or kind, chunk length, state size).
    """
    name = source or "the value function"
    missing = [c for c in config.camera_names if c not in spec.camera_names]
    if missing:
        raise ConfigError(f"{name} reads cameras {list(config.camera_names)} but the policy has "
                          f"{list(spec.camera_names)} (missing {missing}); train the value function on this policy's "
                          "cameras")
    if spec.action_space.dim != config.action_dim or spec.action_space.kind != config.action_kind:
        raise ConfigError(f"{name} scores {config.action_dim}-number '{config.action_kind}' actions but the policy "
                          f"outputs {spec.action_space.dim}-number '{spec.action_space.kind}' actions; use a value "
                          "function trained on this action space")
    if spec.horizon < config.executed_steps:
        raise ConfigError(f"{name} scores the first {config.executed_steps} actions of a chunk but the policy's chunks "
                          f"hold {spec.horizon}; train it with --executed-steps {spec.horizon} or less")
    if spec.num_joints + 1 != config.state_dim:
        raise ConfigError(f"{name} reads a state of {config.state_dim} numbers but the policy has {spec.num_joints} "
                          "joints + gripper")
