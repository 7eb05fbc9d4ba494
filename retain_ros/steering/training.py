"""`retain-train value`: offline value learning on recorded rollouts, and the held-out calibration report.

The default regresses Q(s, a) to the Monte-Carlo return of each decision (`target` 'mc', `cql_alpha` 0): on the
embedded rollouts it is better calibrated and steers better in closed loop than V-GPS's recipe (docs/steering.md).
V-GPS's recipe (`target` 'max', `cql_alpha` 5) is one option away. Loss per batch, at chunk level (one decision = one
executed chunk):
- TD: Q(s, a) against r + discount * max_k Q_target(s', a'_k) over the K samples recorded at the next decision
  (the choice steering makes), 0 after the episode's last decision; the target network follows by Polyak averaging.
  `target` 'executed' bootstraps from the chunk that ran next instead (SARSA), 'mc' regresses to the Monte-Carlo
  return.
- Cal-QL: cql_alpha * (logsumexp_k Q'(s, a_k) - Q(s, a)) over the K samples (the executed one included, so the
  penalty is >= 0), where Q' floors the samples that did not run at the Monte-Carlo return of the decision (Cal-QL's
  lower bound: the data's return), so untried chunks are pushed down only while they score above that return.
- Negatives: a `negatives` share of the rows is paired with another instruction of the dataset and regressed to 0
  (V-GPS's mismatched-instruction negatives).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from retain_ros.errors import ConfigError
from retain_ros.policy.processor_reference import images_to_tensor
from retain_ros.policy.tokenizer import WordTokenizer
from retain_ros.steering.value_data import ValueData, load_value_data
from retain_ros.steering.value_function import ValueFunction
from retain_ros.steering.value_model import ValueConfig, ValueNetwork


TARGETS = ("max", "executed", "mc")


@dataclass
class ValueTrainConfig:
    """A value-learning run.

    Attributes:
        data: rollout directories (`retain-eval sim --record`).
        out: checkpoint directory.
        steps, batch_size, lr, warmup: optimiser schedule (V-GPS: lr 3e-4, 2000 warm-up steps, batch 256).
        discount: per decision (V-GPS: 0.98 per action).
        cql_alpha: weight of the conservative penalty (V-GPS: 5; 0 here: docs/steering.md compares them).
        negatives: share of rows paired with a mismatched instruction.
        target_tau: Polyak rate of the target network (V-GPS: 5e-3).
        held_out: share of episodes kept for the calibration report.
        executed_steps: actions of a chunk that Q scores.
        target: what Q(s, a) regresses to: 'mc' (the decision's Monte-Carlo return: no bootstrap, no target network
            drift; the default, better calibrated and better in closed loop here, docs/steering.md), 'max'
            (r + discount * max_k Q_target(s', a'_k), V-GPS) or 'executed' (r + discount * Q_target(s', a') of the
            chunk that ran next: SARSA, no max bias).
        seed: weights and batches.
        model: ValueConfig overrides (sizes).
        overwrite: write into an existing directory.
    """

    data: tuple[str, ...]
    out: str
    steps: int = 3000
    batch_size: int = 128
    lr: float = 3e-4
    warmup: int = 200
    discount: float = 0.98
    cql_alpha: float = 0.0
    negatives: float = 0.1
    target_tau: float = 5e-3
    held_out: float = 0.1
    executed_steps: int = 8
    target: str = "mc"
    seed: int = 0
    model: dict | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.lr <= 0 or self.warmup < 0:
            raise ConfigError(f"value training needs steps >= 1, batch_size >= 2, lr > 0, warmup >= 0 (got "
                              f"{self.steps}, {self.batch_size}, {self.lr}, {self.warmup})")
        for name in ("negatives", "held_out"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)} must be in [0, 1)")
        if self.target not in TARGETS:
            raise ConfigError(f"--target '{self.target}' is unknown; use one of {', '.join(TARGETS)}")
        if self.cql_alpha < 0 or not 0.0 < self.target_tau <= 1.0:
            raise ConfigError(f"--cql-alpha {self.cql_alpha} must be >= 0 and --target-tau {self.target_tau} in (0, 1]")
        out = Path(self.out)
        if out.exists() and any(out.iterdir()) and not self.overwrite:
            raise ConfigError(f"{out} exists and is not empty; choose another --out or pass --overwrite")


@dataclass
class ValueTrainResult:
    """What a run produced: the checkpoint, its losses and the held-out calibration."""

    out: Path
    steps: int
    rows: int
    episodes: int
    first_loss: float
    final_loss: float
    calibration: dict
    wall_s: float


class _Batches:
    """Tensors of sampled rows (inputs at the value function's normalisation)."""

    def __init__(self, data: ValueData, value: ValueFunction, tokenizer: WordTokenizer):
        self.data, self.value = data, value
        ids, mask = tokenizer.encode_batch(data.instructions)
        self.ids, self.mask = torch.from_numpy(ids), torch.from_numpy(mask)

    def observation(self, rows: np.ndarray, instruction: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        d = self.data
        which = torch.from_numpy(d.instruction[rows] if instruction is None else instruction)
        return {"images": images_to_tensor(d.images[rows]), "token_ids": self.ids[which],
                "token_mask": self.mask[which], "state": self.value.normalize_state(d.states[rows])}

    def candidates(self, rows: np.ndarray) -> torch.Tensor:
        return self.value.normalize_actions(self.data.candidates[rows])


def _mismatched(data: ValueData, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another instruction for each row (its own when the dataset has one instruction only)."""
    n = len(data.instructions)
    if n < 2:
        return data.instruction[rows]
    return (data.instruction[rows] + rng.integers(1, n, len(rows))) % n


def td_cql_loss(net: ValueNetwork, target: ValueNetwork, batches: _Batches, rows: np.ndarray, cfg: ValueTrainConfig,
                rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch loss (module docstring) and its parts."""
    d = batches.data
    chosen = torch.from_numpy(d.chosen[rows])
    q_all = net.q(net.encode(**batches.observation(rows)), batches.candidates(rows))
    q_data = q_all.gather(1, chosen[:, None]).squeeze(1)
    with torch.no_grad():
        returns = torch.from_numpy(d.returns[rows])
        if cfg.target == "mc":
            y = returns
        else:
            nxt = d.next_row[rows]
            q_next = target.q(target.encode(**batches.observation(nxt)), batches.candidates(nxt))
            q_next = (q_next.max(1).values if cfg.target == "max" else
                      q_next.gather(1, torch.from_numpy(d.chosen[nxt])[:, None]).squeeze(1))
            y = torch.from_numpy(d.rewards[rows]) + cfg.discount * (1 - torch.from_numpy(d.dones[rows])) * q_next
        floor = returns[:, None].expand_as(q_all)
    td = F.mse_loss(q_data, y)
    loss, parts = td, {"td": float(td.detach())}
    if cfg.cql_alpha > 0:
        untried = torch.ones_like(q_all, dtype=torch.bool).scatter_(1, chosen[:, None], False)
        bounded = torch.where(untried, torch.maximum(q_all, floor), q_all)
        cql = (torch.logsumexp(bounded, dim=1) - q_data).mean()
        loss = loss + cfg.cql_alpha * cql
        parts["cql"] = float(cql.detach())
    n_neg = int(round(cfg.negatives * len(rows)))
    if n_neg and len(d.instructions) > 1:
        neg = rows[:n_neg]
        obs = batches.observation(neg, _mismatched(d, neg, rng))
        q_neg = net.q(net.encode(**obs), batches.candidates(neg)).gather(
            1, torch.from_numpy(d.chosen[neg])[:, None]).squeeze(1)
        negative = q_neg.pow(2).mean()
        loss = loss + negative
        parts["negative"] = float(negative.detach())
    return loss, parts


def calibration(value: ValueFunction, data: ValueData, batch: int = 256) -> dict:
    """Held-out calibration: Q of the executed chunks against the Monte-Carlo return, and success separation.

    Returns mean squared error and Pearson correlation of Q vs return, the AUC of Q telling decisions of successful
    episodes from those of failed ones, the mean Q of each, and the mean spread of Q over the K samples.
    """
    rows = data.rows(True)
    if len(rows) == 0:
        return {"rows": 0}
    batches = _Batches(data, value, value.tokenizer)
    qs = []
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            qs.append(value.network.q(value.network.encode(**batches.observation(part)), batches.candidates(part)))
    q_all = torch.cat(qs).double().numpy()
    q = q_all[np.arange(len(rows)), data.chosen[rows]]
    g = data.returns[rows].astype(np.float64)
    won = data.success[data.episode[rows]]
    result = {"rows": int(len(rows)), "episodes": int(data.held_out.sum()),
              "successful_episodes": int((data.success & data.held_out).sum()),
              "mse_vs_return": float(np.mean((q - g) ** 2)),
              "pearson_vs_return": float(np.corrcoef(q, g)[0, 1]) if g.std() > 0 and q.std() > 0 else float("nan"),
              "mean_q_success": float(q[won].mean()) if won.any() else float("nan"),
              "mean_q_failure": float(q[~won].mean()) if (~won).any() else float("nan"),
              "auc_success": rank_auc(q[won], q[~won]),
              "mean_spread_over_samples": float((q_all.max(1) - q_all.min(1)).mean())}
    return result


def rank_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney); nan if either is empty."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average the ranks of ties
        same = scores == value
        ranks[same] = ranks[same].mean()
    return float((ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
                 / (len(positive) * len(negative)))


def train_value(cfg: ValueTrainConfig, progress: bool = True, on_log=None) -> ValueTrainResult:
    """Train a value function on recorded rollouts and write its checkpoint (with training.json)."""
    started = time.perf_counter()
    vcfg = ValueConfig(executed_steps=cfg.executed_steps, discount=cfg.discount, **(cfg.model or {}))
    data = load_value_data(list(cfg.data), vcfg.camera_names, vcfg.image_size, vcfg.executed_steps, vcfg.discount,
                           cfg.held_out)
    vcfg = ValueConfig(**{**vcfg.to_dict(), "sample_noise_scale": data.noise_scale})
    tokenizer = WordTokenizer(num_buckets=vcfg.vocab_buckets, max_length=vcfg.max_text_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = ValueNetwork(vcfg)
    value = ValueFunction(vcfg, data.stats(), tokenizer, net)
    net.train().requires_grad_(True)
    target = copy.deepcopy(net).requires_grad_(False)
    batches = _Batches(data, value, tokenizer)
    optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    rng = np.random.default_rng(cfg.seed)
    train_rows = data.rows(False)
    losses: list[float] = []
    with tqdm(total=cfg.steps, desc="value", unit="step", disable=None if progress else True) as bar:
        for step in range(1, cfg.steps + 1):
            rows = rng.choice(train_rows, size=min(cfg.batch_size, len(train_rows)), replace=False)
            loss, parts = td_cql_loss(net, target, batches, rows, cfg, rng)
            value_of_loss = float(loss.detach())
            if not np.isfinite(value_of_loss):
                raise ConfigError(f"value training diverged at step {step} (loss {value_of_loss}); lower --lr or "
                                  "--cql-alpha")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                for p, tp in zip(net.parameters(), target.parameters()):
                    tp.lerp_(p, cfg.target_tau)
            losses.append(value_of_loss)
            bar.update(1)
            if on_log is not None:
                on_log(step, float(np.mean(losses[-50:])), parts)
    net.eval().requires_grad_(False)
    report = calibration(value, data)
    interval = max(1, min(50, len(losses) // 4))
    training = {"config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite")},
                "rows": len(data), "episodes": int(len(data.success)),
                "successful_episodes": int(data.success.sum()), "instructions": data.instructions,
                "first_loss": float(np.mean(losses[:interval])), "final_loss": float(np.mean(losses[-interval:])),
                "held_out": report}
    value.save_pretrained(cfg.out, training)
    return ValueTrainResult(Path(cfg.out), cfg.steps, len(data), int(len(data.success)), training["first_loss"],
                            training["final_loss"], report, time.perf_counter() - started)
