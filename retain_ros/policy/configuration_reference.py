"""Configuration of the reference VLA: a laptop-scale model with pi0's structure.

vision encoder (ViT over both cameras) -> language backbone (transformer over image + instruction tokens) -> action
expert (transformer over a state token and H noisy action tokens, cross-attending to the backbone) producing an H x 8
chunk by flow matching.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import DROID_DT_S, ActionSpace, PolicySpec
from retain_ros.policy.registry import config_from_dict
from retain_ros.policy.tokenizer import DEFAULT_WORDS

TYPE_NAME = "retain_reference_vla"


@dataclass
class ReferenceVLAConfig:
    """Every size and convention of the reference VLA (stored as config.json in a checkpoint).

    Attributes:
        camera_names: cameras the model reads, in order (one learnt camera embedding each).
        image_size: (height, width) of the model's input; other sizes are resized with padding.
        patch_size: ViT patch side in pixels; must divide both image sides.
        vision_width: ViT token width.
        vision_layers: ViT blocks.
        vision_pool: average-pool the patch grid by this factor before the backbone (fewer backbone tokens).
        width: language-backbone token width.
        layers: language-backbone blocks.
        heads: attention heads (all transformers); must divide every width.
        expert_width: action-expert token width.
        expert_layers: action-expert blocks.
        mlp_ratio: MLP hidden size / width.
        num_joints: proprio joints (the state is joints + gripper).
        action_dim: numbers per action (DROID: 8).
        horizon: actions per chunk (H).
        dt_s: time between actions (s).
        num_flow_steps: Euler steps of the flow-matching sampler at inference.
        noise_scale: scale of the sampler's starting noise at inference (1 = a draw from the training distribution;
            0 = always start from its mode, the noise's mean, which removes the spread between draws: on held-out
            generalist demos the embedded base's arm error fell from 0.078 to 0.047 rad/s).
        max_text_length: instruction tokens (BOS + words).
        vocab_words: tokenizer vocabulary size (fixed words; see tokenizer.py).
        vocab_buckets: hash buckets for unseen words.
        action_space: the output action space (DROID by default).
        type: checkpoint type read by the policy registry.
    """

    camera_names: tuple[str, ...] = ("exterior", "wrist")
    image_size: tuple[int, int] = (64, 64)
    patch_size: int = 16
    vision_width: int = 64
    vision_layers: int = 2
    vision_pool: int = 1
    width: int = 96
    layers: int = 3
    heads: int = 4
    expert_width: int = 64
    expert_layers: int = 2
    mlp_ratio: int = 2
    num_joints: int = 7
    action_dim: int = 8
    horizon: int = 10
    dt_s: float = DROID_DT_S
    num_flow_steps: int = 10
    noise_scale: float = 0.0
    max_text_length: int = 16
    vocab_words: int = len(DEFAULT_WORDS)
    vocab_buckets: int = 64
    action_space: ActionSpace = field(default_factory=ActionSpace)
    type: str = TYPE_NAME

    def __post_init__(self) -> None:
        self.camera_names = tuple(self.camera_names)
        self.image_size = tuple(int(v) for v in self.image_size)
        if isinstance(self.action_space, dict):
            self.action_space = ActionSpace.from_dict(self.action_space)
        if self.type != TYPE_NAME:
            raise ConfigError(f"config type '{self.type}' is not the reference VLA ('{TYPE_NAME}')")
        if not self.camera_names:
            raise ConfigError("camera_names is empty; the reference VLA needs at least one camera")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ConfigError(f"image_size={self.image_size} must be (height, width), each >= 8 pixels")
        grid = self.patch_size * self.vision_pool
        if self.patch_size < 1 or any(side % grid for side in self.image_size):
            raise ConfigError(f"image_size={self.image_size} must be divisible by patch_size * vision_pool = {grid}")
        for name in ("vision_width", "width", "expert_width"):
            if getattr(self, name) % self.heads:
                raise ConfigError(f"{name}={getattr(self, name)} must be divisible by heads={self.heads}")
        for name in ("vision_layers", "layers", "expert_layers", "horizon", "num_flow_steps", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.action_dim != self.action_space.dim or self.num_joints != len(self.action_space.joint_names):
            raise ConfigError(f"action_dim={self.action_dim} / num_joints={self.num_joints} do not match the action "
                              f"space ({self.action_space.dim} numbers, {len(self.action_space.joint_names)} joints); "
                              "the reference VLA emits DROID actions (7 joint velocities + gripper = 8)")
        if not 0.0 <= self.noise_scale <= 1.0:
            raise ConfigError(f"noise_scale={self.noise_scale} must be in [0, 1] (1 = sample, 0 = start at the mode)")
        if not 0.0 < self.dt_s <= 1.0:
            raise ConfigError(f"dt_s={self.dt_s} must be in (0, 1] s")

    @classmethod
    def tiny(cls, **overrides: object) -> ReferenceVLAConfig:
        """A model of a few thousand parameters (16x16 images, width 16, one block per part) for tests."""
        settings = dict(image_size=(16, 16), patch_size=4, vision_pool=2, vision_width=16, vision_layers=1, width=16,
                        layers=1, heads=2, expert_width=16, expert_layers=1, horizon=4, num_flow_steps=2,
                        vocab_buckets=8)
        settings.update(overrides)
        return cls(**settings)

    @property
    def vocab_size(self) -> int:
        """Embedding rows: 2 specials + vocabulary words + hash buckets (see tokenizer.py)."""
        return 2 + self.vocab_words + self.vocab_buckets

    @property
    def state_dim(self) -> int:
        """Proprio numbers: joints + gripper."""
        return self.num_joints + 1

    @property
    def tokens_per_camera(self) -> int:
        """Backbone tokens one camera contributes after patching and pooling."""
        grid = self.patch_size * self.vision_pool
        return (self.image_size[0] // grid) * (self.image_size[1] // grid)

    def spec(self) -> PolicySpec:
        """The PolicySpec callers see."""
        return PolicySpec(self.camera_names, self.image_size, self.action_space, self.horizon, self.dt_s,
                          self.num_joints)

    def to_dict(self) -> dict:
        """JSON-able form (config.json)."""
        data = asdict(self)
        data["action_space"] = self.action_space.to_dict()
        data["camera_names"] = list(self.camera_names)
        data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ReferenceVLAConfig:
        """Build from config.json contents, rejecting unknown fields by name.

        Raises:
            ConfigError: unknown or invalid fields.
        """
        return config_from_dict(cls, data, "reference-VLA")
