"""Closed-loop evaluation in the simulator: the paper's comparison (base, task-FT, co-FT, RETAIN) on one target task.

Each model variant is evaluated on the target task in its demo setting (`id`), on each OOD variation family, and on
the generalist suite. Merged variants are built the way the ROS node builds them: one `ResidentMerger` per finetuned
checkpoint holds the inputs, and `Policy.load_merged` swaps the merged weights into one serving policy.

Two skills in sequence (paper Eq. 4): with `task_ft2` (finetuned on `target2` from the first skill's merge) the
comparison adds the second skill's rows and a column for its task; `task_ft2_single` (finetuned on `target2` from the
base) adds the second skill's single-skill merge to compare with. The first skill's merge is base + task-FT or base +
co-FT (`skill2_variants`' recipe), whichever the second skill was finetuned from.

Value-guided steering (`--steering value | random`) adds `<row> + V-GPS` (or `+ random`) rows for the base and the
RETAIN merges: each chunk is chosen among K samples as the node's steering chooses it (`steering/selection.py`), and
`record` keeps every episode with its samples and outcome for `retain-train value`.

Episodes (`sim_rollout.rollout`) execute every chunk as the policy node does; every episode is identified by (task,
variation, seed), the same for every variant. Jobs, one per (variant, cell), run in worker processes that each build
their policy and mergers once (`EvalWorker`). The report: `sim_report`.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from tqdm import tqdm

from retain_ros.errors import ConfigError
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy.interface import Policy
from retain_ros.policy.reference_policy import ReferencePolicy
from retain_ros.evaluate.sim_rollout import rollout
from retain_ros.serving.recipes import check_rules, parse_rules
from retain_ros.sim.env import EnvConfig, TabletopEnv
from retain_ros.sim.tasks import SUITE
from retain_ros.sim.variations import OOD_VARIATIONS, get_variation
from retain_ros.steering.rollouts import RolloutRecorder
from retain_ros.steering.selection import Steerer
from retain_ros.steering.value_function import ValueFunction

log = logging.getLogger(__name__)
ID, GENERALIST, TARGET2 = "id", "generalist", "target2"
DEFAULT_ALPHAS = (0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class Variant:
    """One model of the comparison.

    Attributes:
        name: row label (e.g. 'RETAIN co-FT a=0.50').
        finetuned: 'base' (no finetuned model), a checkpoint key ('task_ft', 'co_ft', 'task_ft2', 'task_ft2_single'),
            or keys joined by '+' for a sequential merge of several skills, in order ('task_ft+task_ft2').
        alpha: merge weight of the finetuned model (a sequential merge: one per skill); None = the finetuned
            checkpoint itself.
        group_alpha: per-group alphas (modality-specific merge), overriding `alpha` for those groups (a sequential
            merge: one alpha or one per skill).
        routes: `instruction_alphas` items (PATTERN=SPEC) of a routed row: each episode is served at the recipe of
            its task's instruction, as the node serves it; an instruction no item matches gets the base (alpha 0).
        steering: how each chunk is chosen among samples: 'none', 'value' (V-GPS) or 'random' (`steering/`).
    """

    name: str
    finetuned: str = "base"
    alpha: float | tuple[float, ...] | None = None
    group_alpha: tuple[tuple[str, float | tuple[float, ...]], ...] = ()
    routes: tuple[str, ...] = ()
    steering: str = "none"

    @property
    def skills(self) -> tuple[str, ...]:
        """The finetuned checkpoint keys this row merges, in order (none for the base)."""
        return () if self.finetuned == "base" else tuple(self.finetuned.split("+"))

    def alpha_values(self) -> list[float]:
        """Every alpha the row uses (for range checks)."""
        values = list(self.alpha) if isinstance(self.alpha, tuple) else [] if self.alpha is None else [self.alpha]
        for _, a in self.group_alpha:
            values += list(a) if isinstance(a, tuple) else [a]
        return values

    def alphas(self) -> dict[str, float] | None:
        """The alphas to merge with (None: load the checkpoint as it is)."""
        if self.alpha is None and not self.group_alpha:
            return None
        return {"default": 1.0 if self.alpha is None else self.alpha, **dict(self.group_alpha)}

    def alphas_for(self, instruction: str) -> dict[str, float] | None:
        """The alphas of an episode with `instruction` (a routed row: its first matching item, else the base)."""
        if not self.routes:
            return self.alphas()
        rule = next((r for r in parse_rules(self.routes) if r.matches(instruction)), None)
        if rule is None:
            return {"default": 0.0}
        return {"default": rule.alpha[0] if rule.alpha else 0.0, **{g: v[0] for g, v in rule.group_alpha.items()}}


FINETUNED_LABELS = {"task_ft": "task-FT", "co_ft": "co-FT"}  # a finetuned checkpoint's key and its rows' label
REFERENCE_GROUPS = ("vision", "language", "action")  # the reference preset's groups, which every row merges by


def routed_variant(items: Sequence[str], finetuned: str = "task_ft") -> Variant:
    """The routed row: each task at the recipe `items` (`instruction_alphas`) give its instruction.

    Raises:
        ConfigError: a bad item, or one that gives several alphas (a row merges one finetuned checkpoint).
    """
    rules = parse_rules(items)
    if not rules:
        raise ConfigError("--instruction-alphas needs at least one PATTERN=SPEC item")
    check_rules(rules, REFERENCE_GROUPS, 1)
    label = FINETUNED_LABELS[finetuned]
    return Variant(f"routed {label}", finetuned, routes=tuple(r.item for r in rules))


def default_variants(alphas: Sequence[float] = DEFAULT_ALPHAS, language_alpha: float = 0.5) -> list[Variant]:
    """The paper's rows: base, task-FT, co-FT, RETAIN on each at every alpha, and the language-only merge."""
    rows = [Variant("base"), Variant("task-FT", "task_ft"), Variant("co-FT", "co_ft")]
    for label, key in (("task-FT", "task_ft"), ("co-FT", "co_ft")):
        rows += [Variant(f"RETAIN {label} a={a:.2f}", key, float(a)) for a in alphas]
    rows += [Variant(f"RETAIN {label} language a={language_alpha:.2f}", key, 1.0, (("language", language_alpha),))
             for label, key in (("task-FT", "task_ft"), ("co-FT", "co_ft"))]
    return rows


def skill2_variants(alphas: tuple[float, float], single: bool = False, recipe: str = "task_ft",
                    chained: bool = True, group_alpha: Mapping[str, float] | None = None) -> list[Variant]:
    """The second skill's rows.

    With `chained`, its finetune from the first skill's merge alone and the two-skill sequential merge at `alphas`
    (first skill, second skill); with `single`, the second skill finetuned from the base and its single-skill merge.
    `recipe` is how both skills were learnt ('task_ft' or 'co_ft'): the first skill's merge is base + that
    checkpoint, and the rows carry its label. `group_alpha` gives some groups their own second-skill alpha in both
    merges (the first skill's merge stays uniform), named in the rows' labels, e.g. '... a=0.95,0.90 language=1.00'.
    """
    if recipe not in FINETUNED_LABELS:
        raise ConfigError(f"skill recipe '{recipe}' is unknown; use {' or '.join(FINETUNED_LABELS)}")
    label = FINETUNED_LABELS[recipe]
    merged = "RETAIN 2 skills" if recipe == "task_ft" else f"RETAIN {label} 2 skills"
    groups = sorted((group_alpha or {}).items())
    unknown = [g for g, _ in groups if g not in REFERENCE_GROUPS]
    if unknown:
        raise ConfigError(f"unknown group '{unknown[0]}' for the second skill's alpha; the groups are: "
                          f"{', '.join(REFERENCE_GROUPS)}")
    suffix = "".join(f" {g}={a:.2f}" for g, a in groups)
    rows = []
    if chained:
        rows += [Variant(f"{label} 2", "task_ft2"),
                 Variant(f"{merged} a={alphas[0]:.2f},{alphas[1]:.2f}{suffix}", f"{recipe}+task_ft2", tuple(alphas),
                         tuple((g, (alphas[0], a)) for g, a in groups))]
    if single:
        rows += [Variant(f"{label} 2 (from base)", "task_ft2_single"),
                 Variant(f"RETAIN {label} 2 a={alphas[1]:.2f}{suffix}", "task_ft2_single", alphas[1], tuple(groups))]
    return rows


STEERING_LABELS = {"value": "V-GPS", "random": "random"}


def steered_variants(variants: Sequence[Variant], mode: str) -> list[Variant]:
    """`<row> + V-GPS` (or `+ random`) for the base and every RETAIN merge among `variants`."""
    label = STEERING_LABELS[mode]
    return [replace(v, name=f"{v.name} + {label}", steering=mode) for v in variants
            if v.steering == "none" and (v.finetuned == "base" or v.name.startswith("RETAIN"))]


def select_rows(variants: Sequence[Variant], pattern: str) -> list[Variant]:
    """The rows whose name the regular expression `pattern` finds (`--rows`).

    Raises:
        ConfigError: a bad expression, or one that selects no row (the message lists the names).
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--rows '{pattern}' is not a regular expression ({exc})") from None
    chosen = [v for v in variants if regex.search(v.name)]
    if not chosen:
        raise ConfigError(f"--rows '{pattern}' selects no row; the rows are: {', '.join(v.name for v in variants)}")
    return chosen


@dataclass(frozen=True)
class Cell:
    """Where episodes run: a task under a variation, scored in one column of the table."""

    column: str
    task: str
    variation: str


def conditions(target: str, ood: Sequence[str] = OOD_VARIATIONS,
               generalist: Sequence[str] | None = None, target2: str | None = None) -> list[Cell]:
    """The target task in `id` and in each OOD family, the second target (if any) and each generalist task in `id`.

    Raises:
        ConfigError: unknown task or variation names.
    """
    SUITE.get(target)
    cells = [Cell(ID, target, ID)] + [Cell(v, target, get_variation(v).name) for v in ood]
    if target2 is not None:
        cells.append(Cell(TARGET2, SUITE.get(target2).name, ID))
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
        target2: a second target task, learnt after the first (a column of its own; None: no second skill).
        task_ft2: finetuned on `target2` from the first skill's merge (its rows need `target2`).
        task_ft2_single: finetuned on `target2` from the base (the second skill's single-skill rows).
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
        steering_checkpoint: the value function of the `+ V-GPS` rows.
        steering_samples: chunks drawn per query in steered rows (K).
        steering_noise: the sampler's noise scale of steered rows (None: the value function's; random rows: 1).
        record: a directory to record every episode into, for value learning (`steering/rollouts.py`).
    """

    base: str
    task_ft: str
    co_ft: str
    target: str
    out: str
    target2: str | None = None
    task_ft2: str | None = None
    task_ft2_single: str | None = None
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
    steering_checkpoint: str | None = None
    steering_samples: int = 10
    steering_noise: float | None = None
    record: str | None = None

    def __post_init__(self) -> None:
        for name in ("episodes", "generalist_episodes", "execute_steps", "workers", "steering_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")
        if self.execution not in ("chunk", "stream"):
            raise ConfigError(f"execution '{self.execution}' is unknown; use chunk or stream")
        for v in self.variants:
            for a in v.alpha_values():
                if not 0.0 <= a <= 1.0:
                    raise ConfigError(f"variant '{v.name}': alpha {a} is outside [0, 1]")
            if len(v.skills) > 1 and v.alpha is None:
                raise ConfigError(f"variant '{v.name}' merges {len(v.skills)} skills in sequence and needs their "
                                  "alphas")
            for what, a in (("alphas", v.alpha), *((f"alphas of group '{g}'", ga) for g, ga in v.group_alpha)):
                if isinstance(a, tuple) and len(a) != len(v.skills):
                    raise ConfigError(f"variant '{v.name}': {len(a)} {what} for {len(v.skills)} finetuned "
                                      "checkpoints; give one per skill")
            for key in v.skills:
                self.checkpoint(key, v.name)
            if v.steering == "value" and not self.steering_checkpoint:
                raise ConfigError(f"row '{v.name}' steers with a value function; give --steering-checkpoint DIR")
        if (self.task_ft2 or self.task_ft2_single) and self.target2 is None:
            raise ConfigError("a second skill's checkpoint needs its task: give --target2 (e.g. "
                              "place_red_and_blue_on_yellow)")
        self.env_config()

    def env_config(self) -> EnvConfig:
        """The simulator settings of every episode (validated)."""
        return EnvConfig(image_size=self.image_size, max_steps=self.max_steps)

    def checkpoint(self, key: str, row: str = "") -> str:
        """Checkpoint path of 'base', 'task_ft', 'co_ft', 'task_ft2' or 'task_ft2_single'.

        Raises:
            ConfigError: an unknown key, or a row needing a checkpoint that was not given (names the option).
        """
        if key not in CHECKPOINT_KEYS:
            raise ConfigError(f"row '{row}': unknown checkpoint '{key}'; known: {', '.join(CHECKPOINT_KEYS)}")
        path = getattr(self, key)
        if path is None:
            raise ConfigError(f"row '{row}' needs the {key} checkpoint; give --{key.replace('_', '-')} DIR")
        return path


CHECKPOINT_KEYS = ("base", "task_ft", "co_ft", "task_ft2", "task_ft2_single")


class VariantPolicies:
    """One serving policy whose weights are swapped per variant, with a resident merger per finetuned checkpoint."""

    def __init__(self, cfg: EvalConfig):
        self.cfg = cfg
        self.policy = ReferencePolicy.from_pretrained(cfg.base)
        self._plain: dict[str, dict[str, torch.Tensor]] = {}
        self._mergers: dict[str, ResidentMerger] = {}

    def activate(self, variant: Variant, instruction: str = "") -> Policy:
        """Swap in the weights of `variant` (for episodes with `instruction`) and return the serving policy."""
        alphas = variant.alphas_for(instruction)
        if alphas is None:
            if variant.finetuned not in self._plain:
                self._plain[variant.finetuned] = ReferencePolicy.from_pretrained(
                    self.cfg.checkpoint(variant.finetuned)).state_dict()
            self.policy.load_merged(self._plain[variant.finetuned])
        else:
            if variant.finetuned not in self._mergers:  # several skills: the sequential merge (paper Eq. 4)
                self._mergers[variant.finetuned] = ResidentMerger.from_checkpoints(
                    self.cfg.base, [self.cfg.checkpoint(k) for k in variant.skills], groups="reference")
            self.policy.load_merged(self._mergers[variant.finetuned].merge(alphas).tensors)
        return self.policy


def steerer_for(cfg: EvalConfig, mode: str, value: ValueFunction | None = None) -> Steerer:
    """The chunk chooser of a row's episodes (the value function loaded once per worker and passed in)."""
    if mode == "none":
        return Steerer()
    noise = cfg.steering_noise if cfg.steering_noise is not None or mode == "value" else 1.0
    return Steerer(mode, cfg.steering_samples, value if mode == "value" else None, noise)


class EvalWorker:
    """One process's evaluator: the serving policy and its resident mergers, built once and reused for every job."""

    def __init__(self, cfg: EvalConfig) -> None:
        torch.set_num_threads(1)  # one process per core; threads would only contend
        self.cfg = cfg
        self.policies = VariantPolicies(cfg)
        self._value: ValueFunction | None = None

    def value(self) -> ValueFunction:
        """The value function of the V-GPS rows (loaded on first use)."""
        if self._value is None:
            self._value = ValueFunction.from_pretrained(self.cfg.steering_checkpoint)
        return self._value

    def run(self, variant: Variant, cell: Cell, seeds: list[int]) -> list[dict[str, object]]:
        """The episodes of one (variant, cell) job."""
        cfg = self.cfg
        policy = self.policies.activate(variant, SUITE.get(cell.task).instruction)
        steerer = steerer_for(cfg, variant.steering, self.value() if variant.steering == "value" else None)
        recorder = RolloutRecorder(cfg.record, variant.name) if cfg.record else None
        records = []
        with TabletopEnv(cell.task, cell.variation, cfg.env_config()) as env:
            for seed in seeds:
                record = rollout(policy, env, seed, cfg.execute_steps, cfg.execution, steerer, recorder)
                records.append({"variant": variant.name, "column": cell.column, "task": cell.task,
                                "variation": cell.variation, **record})
        return records


_POOL_WORKER: EvalWorker | None = None  # in a pool's worker process: its evaluator, made by the pool's initializer


def _start_pool_worker(cfg: EvalConfig) -> None:
    global _POOL_WORKER
    _POOL_WORKER = EvalWorker(cfg)


def _run_in_pool_worker(job: tuple[Variant, Cell, list[int]]) -> list[dict[str, object]]:
    return _POOL_WORKER.run(*job)


def checkpoints_used(variants: Sequence[Variant]) -> list[str]:
    """The checkpoints ('base', 'task_ft', ...) the rows load: the base always, a finetuned one if a row uses it."""
    return ["base"] + sorted({key for v in variants for key in v.skills})


def jobs_of(cfg: EvalConfig) -> list[tuple[Variant, Cell, list[int]]]:
    """One job per (variant, cell): the cell's seeds, the same for every variant."""
    jobs = []
    for variant in cfg.variants:
        for cell in conditions(cfg.target, cfg.ood, cfg.generalist, cfg.target2):
            n = cfg.generalist_episodes if cell.column == GENERALIST else cfg.episodes
            jobs.append((variant, cell, list(range(cfg.seed, cfg.seed + n))))
    return jobs


def run_comparison(cfg: EvalConfig, progress: bool = True,
                   on_record: Callable[[dict[str, object]], None] | None = None) -> list[dict[str, object]]:
    """Evaluate every variant on every cell; returns one record per episode."""
    for key in checkpoints_used(cfg.variants):
        ReferencePolicy.from_pretrained(cfg.checkpoint(key))  # fail early on a bad checkpoint
    if any(v.steering == "value" for v in cfg.variants):
        value = ValueFunction.from_pretrained(cfg.steering_checkpoint)
        value.check_fits(ReferencePolicy.from_pretrained(cfg.base).spec)
    jobs = jobs_of(cfg)
    total = sum(len(j[2]) for j in jobs)
    records: list[dict[str, object]] = []
    with tqdm(total=total, desc="evaluate", unit="ep", disable=None if progress else True, dynamic_ncols=True) as bar:
        if cfg.workers == 1:
            worker = EvalWorker(cfg)
            results = (worker.run(*job) for job in jobs)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(cfg.workers, _start_pool_worker, (cfg,))
            results = pool.imap(_run_in_pool_worker, jobs)
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
