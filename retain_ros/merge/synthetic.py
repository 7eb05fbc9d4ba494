"""Random checkpoints with pi0's parameter names and dtype mix, for tests, benchmarks and the merge demo.

The names follow LeRobot's pi0 layout (vision tower and projector in fp32, language model and action expert in bf16,
fp32 norms), so the shipped `pi0` group preset applies; sizes are set by a few widths and depths. Files are written
with the `safetensors` library itself (or torch.save), independent of this package's own reader and writer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

PREFIX = "model.paligemma_with_expert"


@dataclass(frozen=True)
class Pi0LikeShape:
    """Widths and depths of a pi0-like checkpoint (defaults: ~1.3M parameters, a test-sized model)."""

    vision_width: int = 32
    vision_layers: int = 2
    width: int = 64
    layers: int = 2
    expert_width: int = 32
    vocab: int = 128
    action_dim: int = 8
    patch: int = 4

    @staticmethod
    def with_parameters(target: float) -> Pi0LikeShape:
        """The shape closest to `target` parameters (e.g. 5e8), keeping pi0's proportions (widths step by 64)."""
        def shape_for(width: int) -> Pi0LikeShape:
            return Pi0LikeShape(vision_width=width // 2, vision_layers=4, width=width, layers=4,
                                expert_width=width // 2, vocab=width * 2)

        def count(shape: Pi0LikeShape) -> int:
            return sum(math.prod(s) for _, s, _ in pi0_like_layout(shape))

        width = 64
        while count(shape_for(width + 64)) <= target:
            width += 64
        return min((shape_for(width), shape_for(width + 64)), key=lambda s: abs(count(s) - target))


def pi0_like_layout(shape: Pi0LikeShape = Pi0LikeShape()) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(name, shape, dtype) of every tensor, in a pi0-like order."""
    f32, bf16 = torch.float32, torch.bfloat16
    vw, w, ew = shape.vision_width, shape.width, shape.expert_width
    vt = f"{PREFIX}.paligemma.model.vision_tower.vision_model"
    out = [(f"{vt}.embeddings.patch_embedding.weight", (vw, 3, shape.patch, shape.patch), f32),
           (f"{vt}.embeddings.position_embedding.weight", (16, vw), f32)]
    for i in range(shape.vision_layers):
        layer = f"{vt}.encoder.layers.{i}"
        out += [(f"{layer}.self_attn.{p}_proj.weight", (vw, vw), f32) for p in "qkvo"]
        out += [(f"{layer}.mlp.fc1.weight", (4 * vw, vw), f32), (f"{layer}.mlp.fc2.weight", (vw, 4 * vw), f32),
                (f"{layer}.layer_norm1.weight", (vw,), f32)]
    out.append((f"{PREFIX}.paligemma.model.multi_modal_projector.linear.weight", (w, vw), f32))
    lm = f"{PREFIX}.paligemma.model.language_model"
    out.append((f"{lm}.embed_tokens.weight", (shape.vocab, w), bf16))
    out += _decoder(f"{lm}.layers", shape.layers, w, bf16)
    out.append((f"{lm}.norm.weight", (w,), f32))
    out += _decoder(f"{PREFIX}.gemma_expert.model.layers", shape.layers, ew, bf16)
    out.append((f"{PREFIX}.gemma_expert.model.norm.weight", (ew,), f32))
    out += [("model.state_proj.weight", (ew, shape.action_dim), f32),
            ("model.action_in_proj.weight", (ew, shape.action_dim), f32),
            ("model.action_out_proj.weight", (shape.action_dim, ew), f32),
            ("model.action_time_mlp_in.weight", (ew, 2 * ew), f32),
            ("model.action_time_mlp_out.weight", (ew, ew), f32)]
    return out


def _decoder(prefix: str, layers: int, w: int, dtype: torch.dtype) -> list:
    out = []
    for i in range(layers):
        layer = f"{prefix}.{i}"
        out += [(f"{layer}.self_attn.{p}_proj.weight", (w, w), dtype) for p in "qkvo"]
        out += [(f"{layer}.mlp.{p}_proj.weight", (4 * w, w) if p != "down" else (w, 4 * w), dtype)
                for p in ("gate", "up", "down")]
        out.append((f"{layer}.input_layernorm.weight", (w,), torch.float32))
    return out


def random_state(layout, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors for a layout (normal, scaled like initialised weights)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape, dtype in layout:
        if dtype.is_floating_point:
            state[name] = (torch.randn(shape, generator=gen) * 0.02).to(dtype)
        else:
            state[name] = torch.arange(math.prod(shape), dtype=dtype).reshape(shape)
    return state


def finetuned_copy(state: dict[str, torch.Tensor], seed: int, scale: float = 0.005) -> dict[str, torch.Tensor]:
    """A 'finetuned-looking' copy: every floating tensor moved by a small random delta; integer tensors equal."""
    gen = torch.Generator().manual_seed(seed)
    return {n: (t.float() + torch.randn(t.shape, generator=gen) * scale).to(t.dtype) if t.is_floating_point()
            else t.clone() for n, t in state.items()}


def write_checkpoint(path: str | Path, state: dict[str, torch.Tensor], layout: str = "directory",
                     shards: int = 3) -> Path:
    """Write `state` in one of the supported layouts and return the path to give to retain-merge.

    Args:
        path: a directory for 'directory'/'sharded', a file path for 'safetensors'/'torch'.
        state: name -> tensor.
        layout: 'directory' (config.json + model.safetensors), 'sharded' (shards + index), 'safetensors' (bare file)
            or 'torch' (.pt written with torch.save, ties preserved).
        shards: number of shards for 'sharded'.
    """
    path = Path(path)
    if layout in ("safetensors", "torch"):
        path.parent.mkdir(parents=True, exist_ok=True)
        if layout == "torch":
            torch.save(state, path)
        else:
            save_file({n: t.contiguous() for n, t in state.items()}, str(path))
        return path
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"type": "pi0_like", "tensors": len(state)}, indent=2))
    if layout == "directory":
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
        return path
    if layout != "sharded":
        raise ValueError(f"unknown layout {layout!r}")
    names = list(state)
    per = math.ceil(len(names) / shards)
    weight_map = {}
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: state[n] for n in names[k * per:(k + 1) * per]}
        save_file(part, str(path / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return path
