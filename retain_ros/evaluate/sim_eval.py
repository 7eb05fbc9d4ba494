"""Closed-loop evaluation in the simulator: the paper's comparison (base, task-FT, co-FT, RETAIN) on one target task.

Each model variant is evaluated on the target task in its demo setting (`id`), on each OOD variation family, and on
the generalist suite. Merged variants are built the way the ROS node builds them: one `ResidentMerger` per finetuned
checkpoint holds the inputs, and `Policy.load_merged` swaps the merged weights into one serving policy.

Episodes: the policy is queried on an observation and its chunk is executed exactly as the policy node executes it:
the node's `ChunkExecutor` turns the chunk into one joint trajectory (the first `execute_steps` actions, integrated
from the observed joint positions, limits enforced) and the simulated joint_trajectory_controller tracks it; the
policy is queried again when it ends (the openpi DROID client executes 8 of 10). The simulator waits while the model
runs, so no action is skipped for latency. The episode ends when the task's success holds or at the task's step
limit. Every episode is identified by (task, variation, seed), the same for every variant.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from retain_ros.errors import ConfigError
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy.interface import Observation, Policy
from retain_ros.policy.reference_policy import ReferencePolicy
from retain_ros.ros.chunk_executor import ChunkExecutor, ExecutorConfig, PlannedCommand
from retain_ros.sim.controller import JointTrajectory, TrajectoryPoint
from retain_ros.sim.droid import gripper_position_to_width
from retain_ros.sim.env import EnvConfig, TabletopEnv
from retain_ros.sim.tasks import SUITE
from retain_ros.sim.variations import OOD_VARIATIONS, get_variation

log = logging.getLogger(__name__)
ID, GENERALIST = "id", "generalist"
DEFAULT_ALPHAS = (0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class Variant:
    """One model of the comparison.

    Attributes:
        name: row label (e.g. 'RETAIN co-FT a=0.50').
        finetuned: 'base' (no finetuned model), 'task_ft' or 'co_ft'.
        alpha: merge weight of the finetuned model; None = the finetuned checkpoint itself.
        group_alpha: per-group alphas (modality-specific merge), overriding `alpha` for those groups.
    """

    name: str
    finetuned: str = "base"
    alpha: float | None = None
    group_alpha: tuple[tuple[str, float], ...] = ()

    def alphas(self) -> dict[str, float] | None:
        """The alphas to merge with (None: load the checkpoint as it is)."""
        if self.alpha is None and not self.group_alpha:
            return None
        return {"default": 1.0 if self.alpha is None else self.alpha, **dict(self.group_alpha)}


def default_variants(alphas: Sequence[float] = DEFAULT_ALPHAS, language_alpha: float = 0.5) -> list[Variant]:
    """The paper's rows: base, task-FT, co-FT, RETAIN on each at every alpha, and the language-only merge."""
    rows = [Variant("base"), Variant("task-FT", "task_ft"), Variant("co-FT", "co_ft")]
    for label, key in (("task-FT", "task_ft"), ("co-FT", "co_ft")):
        rows += [Variant(f"RETAIN {label} a={a:.2f}", key, float(a)) for a in alphas]
    rows += [Variant(f"RETAIN {label} language a={language_alpha:.2f}", key, 1.0, (("language", language_alpha),))
             for label, key in (("task-FT", "task_ft"), ("co-FT", "co_ft"))]
    return rows


@dataclass(frozen=True)
class Cell:
    """Where episodes run: a task under a variation, scored in one column of the table."""

    column: str
    task: str
    variation: str


def conditions(target: str, ood: Sequence[str] = OOD_VARIATIONS,
               generalist: Sequence[str] | None = None) -> list[Cell]:
    """The target task in `id` and in each OOD family, and each generalist task in `id`.

    Raises:
        ConfigError: unknown task or variation names.
    """
    SUITE.get(target)
    cells = [Cell(ID, target, ID)] + [Cell(v, target, get_variation(v).name) for v in ood]
    for task in generalist if generalist is not None else SUITE.names(GENERALIST):
        cells.append(Cell(GENERALIST, SUITE.get(task).name, ID))
    return cells


@dataclass
class EvalConfig:
    """A closed-loop comparison.

    Attributes:
        base: pretrained checkpoint directory.
        task_ft: task-finetuned checkpoint (from `base`).
        co_ft: co-finetuned checkpoint (from `base`).
        target: the target task.
        out: output directory (report.md, report.json, alpha_sweep.png).
        episodes: episodes per target cell (id and each OOD family).
        generalist_episodes: episodes per generalist task.
        seed: first episode seed (episode i uses seed + i); keep it away from the training seeds.
        execute_steps: actions executed per chunk before re-querying.
        execution: the node's execution mode: 'chunk' (one trajectory per chunk) or 'stream' (one step per period,
            re-anchored on the measured state, as DROID does).
        image_size: camera image side rendered by the simulator.
        variants: rows to evaluate (default: `default_variants()`).
        ood: OOD variation families (columns).
        generalist: generalist tasks (None = the whole suite).
        workers: worker processes.
        max_steps: cap on episode length in control steps (None: each task's own limit).
    """

    base: str
    task_ft: str
    co_ft: str
    target: str
    out: str
    episodes: int = 20
    generalist_episodes: int = 5
    seed: int = 1000
    execute_steps: int = 8
    execution: str = "chunk"
    image_size: int = 64
    variants: list[Variant] = field(default_factory=default_variants)
    ood: tuple[str, ...] = OOD_VARIATIONS
    generalist: tuple[str, ...] | None = None
    workers: int = 1
    max_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("episodes", "generalist_episodes", "execute_steps", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")
        for v in self.variants:
            for a in [v.alpha, *dict(v.group_alpha).values()]:
                if a is not None and not 0.0 <= a <= 1.0:
                    raise ConfigError(f"variant '{v.name}': alpha {a} is outside [0, 1]")
        self.env_config()

    def env_config(self) -> EnvConfig:
        """The simulator settings of every episode (validated)."""
        return EnvConfig(image_size=self.image_size, max_steps=self.max_steps)

    def checkpoint(self, key: str) -> str:
        """Checkpoint path of 'base', 'task_ft' or 'co_ft'."""
        return getattr(self, key)


def observation_from_sim(obs: dict[str, np.ndarray], instruction: str, stamp_ns: int) -> Observation:
    """The Policy observation of a simulator observation (cameras 'exterior' and 'wrist')."""
    images = {key[: -len("_image")]: value for key, value in obs.items() if key.endswith("_image")}
    return Observation(images, obs["joint_positions"], float(obs["gripper_position"][0]), instruction, stamp_ns)


def plan_to_trajectory(plan: PlannedCommand, joint_names: Sequence[str]) -> JointTrajectory:
    """The JointTrajectory the node would publish for a planned command (header stamp 0: start now)."""
    velocities = [None] * len(plan.times_s) if plan.velocities is None else plan.velocities
    points = tuple(TrajectoryPoint(q, float(t), v) for q, t, v in zip(plan.positions, plan.times_s, velocities))
    return JointTrajectory(tuple(joint_names), points)


def rollout(policy: Policy, env: TabletopEnv, seed: int, execute_steps: int = 8,
            execution: str = "chunk") -> dict[str, object]:
    """Run one closed-loop episode, executing every chunk through the node's ChunkExecutor.

    Chunk mode: one trajectory per chunk, followed to its end, then the next query. Stream mode: one step per control
    period, each re-anchored on the measured joint positions, `execute_steps` of them per chunk.

    Returns:
        A record: seed, success, steps, final reward, mean inference time (ms), chunks queried, chunks rejected by
        the executor.
    """
    obs = env.reset(seed)
    executor = ChunkExecutor(ExecutorConfig(execute_steps=execute_steps, mode=execution))
    period_ns = round(env.config.physics.control_dt_s * 1e9)
    infer_s, queries, rejected, result = 0.0, 0, 0, None
    while True:
        now_ns = env.num_steps * period_ns
        started = time.perf_counter()
        chunk = policy.predict(observation_from_sim(obs, env.instruction, now_ns))
        infer_s += time.perf_counter() - started
        queries += 1
        steps = [chunk.actions] if execution == "chunk" else list(chunk.actions[:execute_steps])
        for action in steps:
            result, refused = _execute(executor, chunk, action, obs["joint_positions"], env, period_ns)
            rejected += refused
            if result.done:
                return {"seed": int(seed), "success": bool(result.success), "steps": env.num_steps,
                        "reward": float(result.reward), "infer_ms": 1e3 * infer_s / queries, "queries": queries,
                        "rejected": rejected}
            obs = result.observation


def _execute(executor: ChunkExecutor, chunk, actions: np.ndarray, q: np.ndarray, env: TabletopEnv,
             period_ns: int) -> tuple[object, bool]:
    """Plan a whole chunk (chunk mode: `actions` is (H, D)) or one step (stream mode: (D,)) and tick until it ends.

    Returns the last tick's result and whether the executor refused the plan (the node then keeps holding, and so does
    the simulated controller, for one period).
    """
    now_ns = env.num_steps * period_ns
    space = chunk.space
    ticks, refused = 1, False
    try:
        if actions.ndim == 2:
            plan = executor.plan(actions, chunk.dt_s, space.kind, space.gripper_index, q, q, now_ns, now_ns)
        else:
            plan = executor.plan_step(actions, chunk.dt_s, space.kind, space.gripper_index, q, now_ns)
    except ConfigError:
        refused = True
    else:
        env.command_trajectory(plan_to_trajectory(plan, space.joint_names))
        if plan.gripper is not None:
            env.command_gripper_width(gripper_position_to_width(plan.gripper))
        ticks = 1 if actions.ndim == 1 else max(1, round(plan.duration_s * 1e9 / period_ns))
    for _ in range(ticks):
        result = env.tick()
        if result.done:
            break
    return result, refused


class VariantPolicies:
    """One serving policy whose weights are swapped per variant, with a resident merger per finetuned checkpoint."""

    def __init__(self, cfg: EvalConfig):
        self.cfg = cfg
        self.policy = ReferencePolicy.from_pretrained(cfg.base)
        self._plain: dict[str, dict[str, torch.Tensor]] = {}
        self._mergers: dict[str, ResidentMerger] = {}

    def activate(self, variant: Variant) -> Policy:
        """Swap in the weights of `variant` and return the serving policy."""
        alphas = variant.alphas()
        if alphas is None:
            if variant.finetuned not in self._plain:
                self._plain[variant.finetuned] = ReferencePolicy.from_pretrained(
                    self.cfg.checkpoint(variant.finetuned)).state_dict()
            self.policy.load_merged(self._plain[variant.finetuned])
        else:
            if variant.finetuned not in self._mergers:
                self._mergers[variant.finetuned] = ResidentMerger.from_checkpoints(
                    self.cfg.base, [self.cfg.checkpoint(variant.finetuned)], groups="reference")
            self.policy.load_merged(self._mergers[variant.finetuned].merge(alphas).tensors)
        return self.policy


_WORKER: dict[str, object] = {}


def _run_job(job: tuple[EvalConfig, Variant, Cell, list[int]]) -> list[dict[str, object]]:
    cfg, variant, cell, seeds = job
    torch.set_num_threads(1)  # one process per core; threads would only contend
    key = (cfg.base, cfg.task_ft, cfg.co_ft)
    if _WORKER.get("key") != key:  # one policy and its mergers per worker process, reused across jobs
        _WORKER.update(key=key, policies=VariantPolicies(cfg))
    policy = _WORKER["policies"].activate(variant)
    records = []
    with TabletopEnv(cell.task, cell.variation, cfg.env_config()) as env:
        for seed in seeds:
            record = rollout(policy, env, seed, cfg.execute_steps, cfg.execution)
            records.append({"variant": variant.name, "column": cell.column, "task": cell.task,
                            "variation": cell.variation, **record})
    return records


def jobs_of(cfg: EvalConfig) -> list[tuple[EvalConfig, Variant, Cell, list[int]]]:
    """One job per (variant, cell): the cell's seeds, the same for every variant."""
    jobs = []
    for variant in cfg.variants:
        for cell in conditions(cfg.target, cfg.ood, cfg.generalist):
            n = cfg.generalist_episodes if cell.column == GENERALIST else cfg.episodes
            jobs.append((cfg, variant, cell, list(range(cfg.seed, cfg.seed + n))))
    return jobs


def run_comparison(cfg: EvalConfig, progress: bool = True,
                   on_record: Callable[[dict[str, object]], None] | None = None) -> list[dict[str, object]]:
    """Evaluate every variant on every cell; returns one record per episode."""
    for key in ("base", "task_ft", "co_ft"):
        ReferencePolicy.from_pretrained(cfg.checkpoint(key))  # fail early on a bad checkpoint
    jobs = jobs_of(cfg)
    total = sum(len(j[3]) for j in jobs)
    records: list[dict[str, object]] = []
    with tqdm(total=total, desc="evaluate", unit="ep", disable=None if progress else True, dynamic_ncols=True) as bar:
        if cfg.workers == 1:
            results = map(_run_job, jobs)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(cfg.workers)
            results = pool.imap(_run_job, jobs)
        finished = False
        try:
            for batch in results:
                records += batch
                for record in batch:
                    if on_record:
                        on_record(record)
                bar.update(len(batch))
            finished = True
        finally:
            if pool is not None:
                if finished:
                    pool.close()
                else:  # an error or Ctrl-C: stop the workers now instead of waiting for every queued job
                    pool.terminate()
                pool.join()
    return records


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(records: Sequence[dict[str, object]], variants: Sequence[Variant],
              columns: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Success table: variant -> column -> {rate, low, high, n, reward}; column 'ood' pools every OOD family.

    `reward` is the mean final task reward (1 on success, else shaped progress in [0, 0.9]): a graded signal that
    still separates models when success rates are all low.
    """
    table: dict[str, dict[str, dict[str, float]]] = {}
    for variant in variants:
        row = {}
        mine = [r for r in records if r["variant"] == variant.name]
        for column in list(columns) + ["ood"]:
            if column == "ood":
                chosen = [r for r in mine if r["column"] not in (ID, GENERALIST)]
            else:
                chosen = [r for r in mine if r["column"] == column]
            k = sum(bool(r["success"]) for r in chosen)
            low, high = wilson_interval(k, len(chosen))
            rewards = [r["reward"] for r in chosen if "reward" in r]
            reward = float(np.mean(rewards)) if rewards else float("nan")
            row[column] = {"rate": k / len(chosen) if chosen else float("nan"), "low": low, "high": high,
                           "n": len(chosen), "reward": reward}
        table[variant.name] = row
    return table


def config_record(cfg: EvalConfig) -> dict[str, object]:
    """The settings of a run, for report.json."""
    data = asdict(cfg)
    data["variants"] = [asdict(v) for v in cfg.variants]
    return data


# Paper numbers (DROID columns, read off the charts +-0.02; shared/reference/retain-method.md) for the report.
PAPER_DROID = {"base": (0.23, 0.72, 0.20), "task-FT": (0.85, 0.52, 0.38), "co-FT": (0.77, 0.56, 0.51),
               "RETAIN task-FT": (0.72, 0.64, 0.55), "RETAIN co-FT": (0.83, 0.71, 0.71)}


def _fmt(cell: dict[str, float]) -> str:
    if not cell["n"]:
        return "-"
    return f"{cell['rate']:.2f} [{cell['low']:.2f}, {cell['high']:.2f}]"


def markdown_report(cfg: EvalConfig, table: dict, records: Sequence[dict], wall_s: float) -> str:
    """The comparison in the paper's layout (ID, generalist, OOD) plus one column per OOD family."""
    families = list(cfg.ood)
    lines = [f"# RETAIN in simulation: target task `{cfg.target}`", "",
             f"Success rate [95% Wilson interval]; {cfg.episodes} episode(s) per target cell (seeds {cfg.seed}.."
             f"{cfg.seed + cfg.episodes - 1}), {cfg.generalist_episodes} per generalist task; {len(records)} "
             f"episodes in {wall_s / 60:.1f} min. OOD pools the families {', '.join(families)}.", "",
             "| Method | ID | Generalist | OOD | " + " | ".join(families) + " |",
             "|---|---|---|---|" + "---|" * len(families)]
    for name, row in table.items():
        cells = [_fmt(row[ID]), _fmt(row[GENERALIST]), _fmt(row["ood"])] + [_fmt(row[f]) for f in families]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Mean final task reward (1 = success, else shaped progress in [0, 0.9]):", "",
              "| Method | ID | Generalist | OOD | " + " | ".join(families) + " |",
              "|---|---|---|---|" + "---|" * len(families)]
    for name, row in table.items():
        cells = [f"{row[c]['reward']:.3f}" for c in [ID, GENERALIST, "ood", *families]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Paper (DROID, pi0-FAST, real robot): ID / Generalist / OOD", "",
              "| Method | ID | Generalist | OOD |", "|---|---|---|---|"]
    lines += [f"| {k} | {a:.2f} | {b:.2f} | {c:.2f} |" for k, (a, b, c) in PAPER_DROID.items()]
    return "\n".join(lines) + "\n"


def sweep_plot(table: dict, variants: Sequence[Variant], path: Path) -> Path:
    """Success vs alpha for RETAIN on task-FT and co-FT (alpha 0 = base, 1 = the finetuned model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for col, (label, key) in enumerate((("task-FT", "task_ft"), ("co-FT", "co_ft"))):
        ax, ax_reward = grid[0, col], grid[1, col]
        points = [(0.0, "base")] + [(v.alpha, v.name) for v in variants
                                    if v.finetuned == key and v.alpha is not None and not v.group_alpha]
        points += [(1.0, v.name) for v in variants if v.finetuned == key and v.alphas() is None]
        points = sorted((a, n) for a, n in points if n in table)
        for column, style in ((ID, "o-"), (GENERALIST, "s-"), ("ood", "^-")):
            xs = [a for a, _ in points]
            ys = [table[n][column]["rate"] for _, n in points]
            lo = [table[n][column]["rate"] - table[n][column]["low"] for _, n in points]
            hi = [table[n][column]["high"] - table[n][column]["rate"] for _, n in points]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, capsize=3, label=column, alpha=0.85)
            ax_reward.plot(xs, [table[n][column]["reward"] for _, n in points], style, label=column, alpha=0.85)
        ax.set_title(f"RETAIN on {label}")
        ax_reward.set_xlabel("alpha (0 = base, 1 = finetuned)")
        ax.set_ylim(-0.05, 1.05)
        ax_reward.set_ylim(0, None)
        ax.grid(alpha=0.3)
        ax_reward.grid(alpha=0.3)
    grid[0, 0].set_ylabel("success rate (95% CI)")
    grid[1, 0].set_ylabel("mean final reward")
    grid[0, 0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(cfg: EvalConfig, records: Sequence[dict], wall_s: float) -> dict[str, Path]:
    """Write report.json (settings, table, every episode with its seed), report.md and alpha_sweep.png."""
    import json

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    table = summarise(records, cfg.variants, [ID, GENERALIST, *cfg.ood])
    paths = {"json": out / "report.json", "md": out / "report.md", "plot": out / "alpha_sweep.png"}
    paths["json"].write_text(json.dumps({"config": config_record(cfg), "table": table, "wall_s": wall_s,
                                         "episodes": list(records)}, indent=1) + "\n")
    paths["md"].write_text(markdown_report(cfg, table, records, wall_s))
    sweep_plot(table, cfg.variants, paths["plot"])
    return paths
