"""Training the reference VLA: pretraining, task finetuning (task-FT) and co-finetuning (co-FT).

- pretrain: a fresh model on the generalist suite; normalisation statistics come from that data.
- finetune: start from a checkpoint, train on the target demos only.
- cofinetune: start from a checkpoint, each batch mixes target demos (`target_fraction`, default 20%) with the
  pretraining data, as the paper's DROID runs did.
Finetuning keeps the start checkpoint's normalisation statistics, so the result can be merged with it.

Determinism: a seed fixes the initial weights, the batch order, the augmentation and the flow-matching noise (all
drawn from one torch.Generator); with the same data, thread count and torch build, two runs give identical weights.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from retain_ros.errors import ConfigError
from retain_ros.merge.groups import load_preset
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.processor_reference import NormalizationStats, images_to_tensor
from retain_ros.policy.reference_policy import ReferencePolicy, random_policy
from retain_ros.train.data import DemoSet, load_demos

log = logging.getLogger(__name__)
PRETRAIN, FINETUNE, COFINETUNE = "pretrain", "finetune", "cofinetune"
MODES = (PRETRAIN, FINETUNE, COFINETUNE)


@dataclass
class TrainConfig:
    """One training run.

    Attributes:
        mode: 'pretrain', 'finetune' or 'cofinetune'.
        data: dataset directories of the run's main data (pretrain: generalist suite; (co)finetune: target demos).
        out: output checkpoint directory.
        init: checkpoint to start from ((co)finetune only).
        pretrain_data: dataset directories mixed in by cofinetune.
        target_fraction: share of target samples in each cofinetune batch.
        steps: optimiser steps.
        batch_size: samples per step.
        lr: peak learning rate (AdamW; linear warm-up over 5% of the steps, cosine decay to 10%).
        weight_decay: AdamW weight decay.
        seed: seed of everything random in the run.
        augment: random image shifts and brightness/contrast changes.
        max_episodes: cap on episodes per dataset directory.
        model: reference-VLA settings for pretrain (ignored when starting from a checkpoint).
        overwrite: allow writing into an existing checkpoint directory.
        freeze: parameter groups of the reference preset (vision, language, action) kept as `init` has them
            ((co)finetune only): which groups a finetune may move.
    """

    mode: str
    data: tuple[str, ...]
    out: str
    init: str | None = None
    pretrain_data: tuple[str, ...] = ()
    target_fraction: float = 0.2
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    seed: int = 0
    augment: bool = False
    max_episodes: int | None = None
    model: dict = field(default_factory=dict)
    overwrite: bool = False
    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.data, self.pretrain_data, self.freeze = tuple(self.data), tuple(self.pretrain_data), tuple(self.freeze)
        if self.mode not in MODES:
            raise ConfigError(f"unknown training mode '{self.mode}'; choose one of {', '.join(MODES)}")
        if not self.data:
            raise ConfigError("give at least one dataset directory (--data)")
        if self.mode == PRETRAIN and self.init:
            raise ConfigError("pretrain starts from a fresh model; use finetune/cofinetune to start from --init")
        if self.mode != PRETRAIN and not self.init:
            raise ConfigError(f"{self.mode} needs --init CHECKPOINT (the pretrained model to start from)")
        if self.freeze and self.mode == PRETRAIN:
            raise ConfigError("--freeze keeps groups of the --init checkpoint; pretrain has none (use it with "
                              "finetune or cofinetune)")
        groups = load_preset("reference").groups if self.freeze else ()
        if self.freeze and (set(self.freeze) - set(groups) or len(set(self.freeze)) == len(groups)):
            raise ConfigError(f"--freeze {','.join(self.freeze)}: give some of {', '.join(groups)}, not all")
        if self.mode == COFINETUNE and not self.pretrain_data:
            raise ConfigError("cofinetune needs --pretrain-data DIR (the generalist data mixed into each batch)")
        if not 0.0 < self.target_fraction < 1.0:
            raise ConfigError(f"target_fraction={self.target_fraction} must be in (0, 1) (default 0.2)")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if not 0.0 < self.lr < 1.0:
            raise ConfigError(f"lr={self.lr} must be in (0, 1)")
        out = Path(self.out)
        if out.exists() and any(out.iterdir()) and not self.overwrite:
            raise ConfigError(f"{out} exists and is not empty; choose a new --out or pass --overwrite")


@dataclass
class TrainResult:
    """What a run produced: the checkpoint, the loss curve (mean per logging interval) and timings."""

    out: Path
    losses: list[float]
    first_loss: float
    final_loss: float
    steps: int
    samples: int
    wall_s: float
    parameters: int


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to 10% of the peak."""
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def augment_images(images: torch.Tensor, generator: torch.Generator, max_shift: int = 4) -> torch.Tensor:
    """Random shift (replicate pad + crop) and brightness/contrast per sample and camera; images (B, C, 3, H, W)."""
    b, c, _, h, w = images.shape
    flat = images.flatten(0, 1)
    padded = torch.nn.functional.pad(flat, (max_shift,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * max_shift + 1, (b * c,), generator=generator).tolist()
    dy = torch.randint(0, 2 * max_shift + 1, (b * c,), generator=generator).tolist()
    shifted = torch.stack([padded[i, :, y:y + h, x:x + w] for i, (x, y) in enumerate(zip(dx, dy))])
    contrast = 1.0 + 0.2 * (torch.rand(b * c, 1, 1, 1, generator=generator) - 0.5)
    brightness = 0.2 * (torch.rand(b * c, 1, 1, 1, generator=generator) - 0.5)
    return (shifted * contrast + brightness).clamp(-1, 1).view(b, c, *shifted.shape[1:])


class BatchSampler:
    """Draws batches from a main set and, for cofinetune, a mixed-in set, with one generator."""

    def __init__(self, main: DemoSet, policy: ReferencePolicy, generator: torch.Generator,
                 mixed: DemoSet | None = None, main_fraction: float = 1.0):
        self.sets = [main] + ([mixed] if mixed is not None else [])
        self.fraction = main_fraction if mixed is not None else 1.0
        self.processor = policy.processor
        self.generator = generator
        self._tokens = [self.processor.tokenizer.encode_batch(s.instructions) for s in self.sets]

    def draw(self, batch_size: int, augment: bool) -> dict[str, torch.Tensor]:
        """One batch of normalised model inputs and target actions."""
        n_main = batch_size if len(self.sets) == 1 else max(1, round(self.fraction * batch_size))
        parts = []
        for k, (demos, count) in enumerate(zip(self.sets, (n_main, batch_size - n_main))):
            if count:
                idx = torch.randint(0, len(demos), (count,), generator=self.generator).numpy()
                parts.append((k, demos, idx))
        images = np.concatenate([d.images[i] for _, d, i in parts])
        ids = np.concatenate([self._tokens[k][0][i] for k, _, i in parts])
        mask = np.concatenate([self._tokens[k][1][i] for k, _, i in parts])
        states = np.concatenate([d.states[i] for _, d, i in parts])
        actions = np.concatenate([d.action_chunks[i] for _, d, i in parts])
        image_tensor = images_to_tensor(images)
        if augment:
            image_tensor = augment_images(image_tensor, self.generator)
        return {"images": image_tensor, "token_ids": torch.from_numpy(ids), "token_mask": torch.from_numpy(mask),
                "state": self.processor.normalize_state(states),
                "actions": self.processor.normalize_actions(actions)}


def _start_policy(cfg: TrainConfig, main: DemoSet | None) -> ReferencePolicy:
    if cfg.mode == PRETRAIN:
        config = ReferenceVLAConfig.from_dict(dict(cfg.model))
        stats = NormalizationStats.from_data(main.states, main.action_chunks[:, 0])
        return random_policy(config, cfg.seed, stats)
    return ReferencePolicy.from_pretrained(cfg.init)


def train(cfg: TrainConfig, progress: bool = True,
          on_log: Callable[[int, float], None] | None = None, log_every: int = 25) -> TrainResult:
    """Run one training job and write its checkpoint.

    Returns:
        The checkpoint path, loss curve and timings.

    Raises:
        ConfigError: bad settings, unreadable data or start checkpoint.
    """
    started = time.perf_counter()
    init_config = None if cfg.mode == PRETRAIN else ReferencePolicy.from_pretrained(cfg.init).config
    model_config = init_config or ReferenceVLAConfig.from_dict(dict(cfg.model))
    main = load_demos(cfg.data, model_config, cfg.max_episodes)
    mixed = load_demos(cfg.pretrain_data, model_config, cfg.max_episodes) if cfg.mode == COFINETUNE else None
    log.info("data: %s%s", main.describe(), f"; mixed in: {mixed.describe()}" if mixed else "")
    policy = _start_policy(cfg, main)
    model = policy.model.train().requires_grad_(True)
    preset = load_preset("reference")
    trained = []
    for name, param in model.named_parameters():
        param.requires_grad_(preset.group_of(name) not in cfg.freeze)
        if param.requires_grad:
            trained.append(param)
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = BatchSampler(main, policy, generator, mixed, cfg.target_fraction)
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses, window = [], []
    with tqdm(total=cfg.steps, desc=cfg.mode, unit="step", disable=None if progress else True,
              dynamic_ncols=True) as bar:
        for step in range(cfg.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg.steps, cfg.lr)
            batch = sampler.draw(cfg.batch_size, cfg.augment)
            loss = model.loss(batch["images"], batch["token_ids"], batch["token_mask"], batch["state"],
                              batch["actions"], generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            window.append(float(loss.detach()))
            if len(window) == log_every or step == cfg.steps - 1:
                losses.append(float(np.mean(window)))
                window = []
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if on_log:
                    on_log(step + 1, losses[-1])
            bar.update(1)
    model.eval().requires_grad_(False)
    info = {"mode": cfg.mode, "steps": cfg.steps, "seed": cfg.seed, "samples": len(main),
            "episodes": main.episodes, "init": cfg.init, "final_loss": losses[-1],
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite")}}
    out = policy.save_pretrained(cfg.out, metadata={"retain_train": json.dumps(info)})
    return TrainResult(out, losses, losses[0], losses[-1], cfg.steps, len(main), time.perf_counter() - started,
                       sum(p.numel() for p in model.parameters()))
