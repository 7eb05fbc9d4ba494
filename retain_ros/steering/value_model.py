"""The value network: Q(cameras, state, instruction, executed action chunk) -> expected discounted success.

Shaped after V-GPS's critic at laptop scale: each camera goes through a small FiLM-conditioned convolutional encoder
(the instruction's embedding scales and shifts every feature map, as V-GPS's FiLM ResNet does), the features of the
cameras, the normalised state, the instruction embedding and the normalised executed actions feed an MLP (256-256 in
V-GPS), one output. The observation is encoded once and shared by the K candidate chunks of a steering step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from retain_ros.errors import ConfigError
from retain_ros.policy.registry import config_from_dict
from retain_ros.policy.tokenizer import DEFAULT_WORDS

VALUE_TYPE = "retain_value_function"


@dataclass
class ValueConfig:
    """Every size and convention of a value function (config.json of a value checkpoint).

    Attributes:
        camera_names: cameras read, in order (the policy's names).
        image_size: (height, width) the encoder sees; images are resized with padding like the policy's.
        state_dim: joints + gripper.
        action_dim: numbers per action (DROID: 8).
        action_kind: the action space the chunks are in (must equal the policy's).
        executed_steps: the first actions of a chunk that Q scores (what the executor runs before re-querying).
        channels: channels of the stride-2 convolutions (each halves the image side).
        feature_width: features per camera.
        text_width: instruction embedding width.
        hidden: MLP hidden sizes.
        vocab_words: tokenizer vocabulary size; vocab_buckets: its hash buckets; max_text_length: its tokens.
        discount: per decision (one chunk) of the returns it was trained on.
        sample_noise_scale: the flow sampler's noise scale of the K candidates (the spread it was trained to rank).
        type: checkpoint type.
    """

    camera_names: tuple[str, ...] = ("exterior", "wrist")
    image_size: tuple[int, int] = (64, 64)
    state_dim: int = 8
    action_dim: int = 8
    action_kind: str = "droid_joint_velocity"
    executed_steps: int = 8
    channels: tuple[int, ...] = (16, 32, 32, 32)
    feature_width: int = 128
    text_width: int = 32
    hidden: tuple[int, ...] = (256, 256)
    vocab_words: int = len(DEFAULT_WORDS)
    vocab_buckets: int = 64
    max_text_length: int = 16
    discount: float = 0.98
    sample_noise_scale: float = 1.0
    type: str = VALUE_TYPE

    def __post_init__(self) -> None:
        for name in ("camera_names", "image_size", "channels", "hidden"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.type != VALUE_TYPE:
            raise ConfigError(f"config type '{self.type}' is not a value function ('{VALUE_TYPE}'); give a directory "
                              "written by retain-train value")
        side = min(self.image_size) >> len(self.channels)
        if side < 1 or any(s % (1 << len(self.channels)) for s in self.image_size):
            raise ConfigError(f"image_size {self.image_size} must be divisible by 2^{len(self.channels)} (one halving "
                              "per convolution)")
        if self.executed_steps < 1 or not 0.0 < self.discount <= 1.0 or self.sample_noise_scale < 0.0:
            raise ConfigError(f"value config: executed_steps={self.executed_steps} must be >= 1, discount="
                              f"{self.discount} in (0, 1], sample_noise_scale={self.sample_noise_scale} >= 0")

    @property
    def vocab_size(self) -> int:
        """Rows of the instruction embedding (specials + words + buckets)."""
        return 2 + self.vocab_words + self.vocab_buckets

    def to_dict(self) -> dict:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ValueConfig:
        """Inverse of `to_dict`; unknown keys are refused.

        Raises:
            ConfigError: unknown keys or bad values.
        """
        return config_from_dict(cls, data, "value-function")


class FiLMEncoder(nn.Module):
    """Stride-2 convolutions, each followed by a FiLM of the instruction and a ReLU, then a linear map."""

    def __init__(self, cfg: ValueConfig):
        super().__init__()
        chans = (3,) + cfg.channels
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in zip(chans, chans[1:]))
        self.films = nn.ModuleList(nn.Linear(cfg.text_width, 2 * c) for c in cfg.channels)
        side = (cfg.image_size[0] >> len(cfg.channels)) * (cfg.image_size[1] >> len(cfg.channels))
        self.out = nn.Linear(cfg.channels[-1] * side, cfg.feature_width)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Encode images (B, 3, H, W) in [-1, 1] under text (B, text_width) -> (B, feature_width)."""
        x = images
        for conv, film in zip(self.convs, self.films):
            scale, shift = film(text)[:, :, None, None].chunk(2, dim=1)
            x = F.relu(conv(x) * (1 + scale) + shift)
        return F.relu(self.out(x.flatten(1)))


class ValueNetwork(nn.Module):
    """Q(observation, executed chunk, instruction); see the module docstring."""

    def __init__(self, cfg: ValueConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.encoders = nn.ModuleList(FiLMEncoder(cfg) for _ in cfg.camera_names)
        width = len(cfg.camera_names) * cfg.feature_width + cfg.state_dim + cfg.text_width
        sizes = (width + cfg.executed_steps * cfg.action_dim,) + cfg.hidden
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

    def encode(self, images: torch.Tensor, token_ids: torch.Tensor, token_mask: torch.Tensor,
               state: torch.Tensor) -> torch.Tensor:
        """The observation's features (B, width): images (B, C, 3, H, W), tokens (B, L), state (B, state_dim)."""
        mask = token_mask.float()[..., None]
        text = (self.embed_tokens(token_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        cams = [enc(images[:, i], text) for i, enc in enumerate(self.encoders)]
        return torch.cat(cams + [state, text], dim=-1)

    def q(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q of K chunks per observation: features (B, width), actions (B, K, executed_steps, action_dim) -> (B, K)."""
        b, k = actions.shape[:2]
        x = torch.cat([features[:, None, :].expand(b, k, features.shape[-1]), actions.flatten(2)], dim=-1)
        return self.head(x).squeeze(-1)
