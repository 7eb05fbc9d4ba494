"""The reference VLA: pi0's structure at laptop scale, in plain PyTorch.

Parameter names (what `config/groups/reference.yaml` assigns to groups):
    vision_encoder.*      ViT over every camera (patch embedding, blocks, pooling, projector to the backbone width)
    language_backbone.*   token embedding + transformer over [image tokens, instruction tokens]
    action_expert.*       transformer over [state token, H action tokens], cross-attending to the backbone output
    state_proj, action_in_proj, action_out_proj, action_time_mlp_in, action_time_mlp_out   pi0's projections

Flow matching as in pi0: x_t = t * noise + (1 - t) * actions, the expert predicts the velocity u = noise - actions, and
sampling integrates from t = 1 (noise) to t = 0 with `num_flow_steps` Euler steps. All inputs and outputs here are
normalised tensors; `processor_reference.py` owns the conversion from and to robot units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from retain_ros.policy.configuration_reference import ReferenceVLAConfig


class Attention(nn.Module):
    """Multi-head attention; keys/values come from `context` (cross-attention) or from the queries' own tokens."""

    def __init__(self, width: int, heads: int, context_width: int | None = None):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.kv_proj = nn.Linear(context_width or width, 2 * width)
        self.o_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from `x` (B, N, W) to `context` (B, M, Wc) or `x`; `key_mask` (B, M) is True on valid keys."""
        b, n, w = x.shape
        source = x if context is None else context
        q = self.q_proj(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv_proj(source).view(b, source.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention, GELU MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, context_width: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.self_attn = Attention(width, heads)
        self.cross = context_width is not None
        if self.cross:
            self.norm_cross = nn.LayerNorm(width)
            self.cross_attn = Attention(width, heads, context_width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One block over x (B, N, W)."""
        x = x + self.self_attn(self.norm1(x), key_mask=mask)
        if self.cross:
            x = x + self.cross_attn(self.norm_cross(x), context, context_mask)
        return x + self.mlp(self.norm2(x))


class VisionEncoder(nn.Module):
    """ViT applied to each camera separately, pooled and projected to the backbone width."""

    def __init__(self, cfg: ReferenceVLAConfig):
        super().__init__()
        self.grid = (cfg.image_size[0] // cfg.patch_size, cfg.image_size[1] // cfg.patch_size)
        self.pool = cfg.vision_pool
        self.patch_embed = nn.Conv2d(3, cfg.vision_width, cfg.patch_size, stride=cfg.patch_size)
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid[0] * self.grid[1], cfg.vision_width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.vision_width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.vision_layers))
        self.norm = nn.LayerNorm(cfg.vision_width)
        self.camera_embed = nn.Parameter(torch.randn(len(cfg.camera_names), cfg.width) * 0.02)
        self.projector = nn.Linear(cfg.vision_width, cfg.width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map images (B, C, 3, H, W) in [-1, 1] to tokens (B, C * tokens_per_camera, width)."""
        b, c = images.shape[:2]
        x = self.patch_embed(images.flatten(0, 1)).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.pool > 1:
            x = x.transpose(1, 2).reshape(b * c, -1, *self.grid)
            x = F.avg_pool2d(x, self.pool).flatten(2).transpose(1, 2)
        x = self.projector(x).view(b, c, -1, self.projector.out_features) + self.camera_embed[None, :, None, :]
        return x.flatten(1, 2)


class LanguageBackbone(nn.Module):
    """Transformer over image tokens followed by instruction tokens (bidirectional prefix, as pi0's prefix)."""

    def __init__(self, cfg: ReferenceVLAConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.width)
        self.text_pos = nn.Parameter(torch.randn(cfg.max_text_length, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, image_tokens: torch.Tensor, token_ids: torch.Tensor,
                token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the prefix features (B, T, width) and their validity mask (B, T)."""
        text = self.embed_tokens(token_ids) * math.sqrt(self.embed_tokens.embedding_dim) + self.text_pos
        x = torch.cat([image_tokens, text], dim=1)
        mask = torch.cat([torch.ones(image_tokens.shape[:2], dtype=torch.bool, device=x.device), token_mask], dim=1)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x), mask


class ActionExpert(nn.Module):
    """Transformer over [state token, action tokens] that cross-attends to the backbone's prefix features."""

    def __init__(self, cfg: ReferenceVLAConfig):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1 + cfg.horizon, cfg.expert_width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.expert_width, cfg.heads, cfg.mlp_ratio, context_width=cfg.width)
                                    for _ in range(cfg.expert_layers))
        self.norm = nn.LayerNorm(cfg.expert_width)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        """Map tokens (B, 1 + H, We) to features of the same shape."""
        x = tokens + self.pos_embed
        for block in self.blocks:
            x = block(x, context=context, context_mask=context_mask)
        return self.norm(x)


def time_embedding(t: torch.Tensor, width: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """pi0's sine-cosine embedding of the flow time t (B,) -> (B, width)."""
    fraction = torch.linspace(0.0, 1.0, width // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = t[:, None].float() * (2 * math.pi / period)[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class ReferenceVLA(nn.Module):
    """The reference VLA module; see the module docstring for its parts and parameter names."""

    def __init__(self, config: ReferenceVLAConfig):
        super().__init__()
        self.config = config
        ew = config.expert_width
        self.vision_encoder = VisionEncoder(config)
        self.language_backbone = LanguageBackbone(config)
        self.action_expert = ActionExpert(config)
        self.state_proj = nn.Linear(config.state_dim, ew)
        self.action_in_proj = nn.Linear(config.action_dim, ew)
        self.action_time_mlp_in = nn.Linear(2 * ew, ew)
        self.action_time_mlp_out = nn.Linear(ew, ew)
        self.action_out_proj = nn.Linear(ew, config.action_dim)

    def encode_prefix(self, images: torch.Tensor, token_ids: torch.Tensor,
                      token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, 3, H, W) in [-1, 1] and instruction tokens -> prefix features and mask (computed once)."""
        return self.language_backbone(self.vision_encoder(images), token_ids, token_mask)

    def velocity(self, prefix: torch.Tensor, prefix_mask: torch.Tensor, state: torch.Tensor, x_t: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
        """Predict the flow velocity, shape (B, H, D), of noisy normalised actions x_t at flow time t (B,)."""
        action_tokens = self.action_in_proj(x_t)
        time_tokens = time_embedding(t, action_tokens.shape[-1]).to(action_tokens.dtype)
        time_tokens = time_tokens[:, None, :].expand_as(action_tokens)
        fused = self.action_time_mlp_out(F.silu(self.action_time_mlp_in(torch.cat([action_tokens, time_tokens], -1))))
        tokens = torch.cat([self.state_proj(state)[:, None, :], fused], dim=1)
        features = self.action_expert(tokens, prefix, prefix_mask)
        return self.action_out_proj(features[:, 1:])

    def loss(self, images: torch.Tensor, token_ids: torch.Tensor, token_mask: torch.Tensor, state: torch.Tensor,
             actions: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching loss on a batch of normalised actions (B, H, D); t ~ Beta(1.5, 1) as in pi0."""
        b = actions.shape[0]
        noise = torch.randn(actions.shape, generator=generator, dtype=actions.dtype)
        # Beta(1.5, 1) by inverse CDF: F(t) = t^1.5 -> t = u^(2/3); squashed into [0.001, 1] as in pi0.
        t = torch.rand(b, generator=generator, dtype=actions.dtype).pow(2.0 / 3.0) * 0.999 + 0.001
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        prefix, prefix_mask = self.encode_prefix(images, token_ids, token_mask)
        v = self.velocity(prefix, prefix_mask, state, x_t, t)
        return F.mse_loss(v, noise - actions)

    @torch.no_grad()
    def sample(self, images: torch.Tensor, token_ids: torch.Tensor, token_mask: torch.Tensor, state: torch.Tensor,
               noise: torch.Tensor) -> torch.Tensor:
        """Integrate the flow from `noise` (B, H, D) at t = 1 to normalised actions at t = 0.

        Inputs of batch 1 with K noise draws (B = K) encode the prefix once and share it among the draws.
        """
        prefix, prefix_mask = self.encode_prefix(images, token_ids, token_mask)
        if prefix.shape[0] == 1 and noise.shape[0] > 1:
            prefix, prefix_mask = (x.expand(noise.shape[0], *x.shape[1:]) for x in (prefix, prefix_mask))
            state = state.expand(noise.shape[0], *state.shape[1:])
        steps = self.config.num_flow_steps
        x = noise
        for i in range(steps):
            t = torch.full((x.shape[0],), 1.0 - i / steps, dtype=x.dtype, device=x.device)
            x = x - self.velocity(prefix, prefix_mask, state, x, t) / steps
        return x
