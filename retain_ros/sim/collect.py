"""Parallel expert runs: demonstration collection (dataset + optional bags) and the expert success check.

Work is split into chunks of seeds per (task, variation); each worker process builds its own environment (and GL
context) per chunk, so nothing is shared between processes. Every episode is seeded by its own seed, so results do
not depend on the number of workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from retain_ros.errors import ConfigError
from retain_ros.sim.bag import STORAGES, write_episode_bag
from retain_ros.sim.dataset import INDEX_NAME, episode_name, index_entry, save_episode, write_index
from retain_ros.sim.droid import CONTROL_RATE_HZ
from retain_ros.sim.env import DEFAULT_IMAGE_SIZE, EnvConfig, TabletopEnv
from retain_ros.sim.episode import run_expert_episode
from retain_ros.sim.tasks import SUITE
from retain_ros.sim.variations import VARIATIONS, get_variation

log = logging.getLogger(__name__)
_CHUNK = 4  # episodes per job: amortises environment construction, keeps the progress bar moving


def default_workers() -> int:
    """Worker processes to use by default: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _check_counts(episodes: int, workers: int) -> None:
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes} is impossible; ask for at least 1 episode")
    if workers < 1:
        raise ConfigError(f"--workers {workers} is impossible; use at least 1 worker process")


@dataclass(frozen=True)
class CollectConfig:
    """A demonstration collection run.

    Attributes:
        tasks: task names or tags (`generalist`, `target`, `all`).
        variation: variation name.
        episodes: episodes per task.
        out_dir: output directory (created; must not already hold a dataset unless `overwrite`).
        seed: seed of the first episode; episode i uses seed + i.
        workers: worker processes.
        bag: also write one rosbag2 per episode under out_dir/bags.
        bag_storage: 'sqlite3' or 'mcap'.
        image_size: camera image side in pixels.
        noise_rad_s: DART noise injection: standard deviation (rad/s) of correlated joint-velocity noise added to the
            executed actions; labels stay the expert's clean actions (0: none).
        overwrite: allow writing into a directory that already holds index.json.
    """

    tasks: tuple[str, ...]
    variation: str
    episodes: int
    out_dir: Path
    seed: int = 0
    workers: int = field(default_factory=default_workers)
    bag: bool = False
    bag_storage: str = "sqlite3"
    image_size: int = DEFAULT_IMAGE_SIZE
    noise_rad_s: float = 0.0
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(SUITE.resolve(self.tasks)))
        if not self.tasks:
            raise ConfigError(f"no tasks given; choose from {', '.join(SUITE.names())} or a tag")
        get_variation(self.variation)
        _check_counts(self.episodes, self.workers)
        if self.seed < 0:
            raise ConfigError(f"--seed {self.seed} must be >= 0")
        if self.bag_storage not in STORAGES:
            raise ConfigError(f"unknown bag storage '{self.bag_storage}'; use one of {', '.join(STORAGES)}")
        EnvConfig(image_size=self.image_size)  # validates the size
        if not 0.0 <= self.noise_rad_s <= 0.5:
            raise ConfigError(f"--noise {self.noise_rad_s} must be in [0, 0.5] rad/s; the expert itself fails above "
                              "about 0.1 (0.03-0.06 gives recovery data and keeps it successful)")


def prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """Create `out_dir` and check it is writable and not already a dataset.

    Raises:
        ConfigError: not creatable / writable, or it already holds index.json (without `overwrite`).
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output directory {out_dir}: {exc.strerror}; choose a writable --out") \
            from exc
    if (out_dir / INDEX_NAME).exists() and not overwrite:
        raise ConfigError(f"{out_dir} already holds a dataset ({INDEX_NAME}); choose a new --out or pass --overwrite")
    return out_dir


def _collect_chunk(job: tuple[str, str, list[int], CollectConfig]) -> list[dict[str, object]]:
    task, variation, seeds, cfg = job
    entries = []
    with TabletopEnv(task, variation, EnvConfig(image_size=cfg.image_size)) as env:
        for seed in seeds:
            episode = run_expert_episode(env, seed, cfg.noise_rad_s)
            name = episode_name(task, variation, seed)
            save_episode(episode, cfg.out_dir / f"{name}.npz")
            bag = None
            if cfg.bag:
                write_episode_bag(episode, cfg.out_dir / "bags" / name, storage=cfg.bag_storage)
                bag = f"bags/{name}"
            entries.append(index_entry(episode, f"{name}.npz", bag))
    return entries


def _check_chunk(job: tuple[str, str, list[int]]) -> list[dict[str, object]]:
    task, variation, seeds = job
    env = TabletopEnv(task, variation, EnvConfig(render=False))
    out = []
    for seed in seeds:
        episode = run_expert_episode(env, seed)
        out.append({"task": task, "variation": variation, "seed": seed, "success": episode.success,
                    "num_steps": episode.num_steps})
    return out


def _chunks(pairs: Iterable[tuple[str, str]], seeds: Sequence[int]) -> list[tuple[str, str, list[int]]]:
    return [(t, v, list(seeds[i:i + _CHUNK])) for t, v in pairs for i in range(0, len(seeds), _CHUNK)]


def run_parallel(worker: Callable, jobs: list, workers: int, total: int, desc: str,
                 progress: bool = True) -> list[dict[str, object]]:
    """Run `worker` over `jobs` (each returning a list of records) in `workers` processes with a progress bar."""
    results: list[dict[str, object]] = []
    with tqdm(total=total, desc=desc, unit="ep", disable=None if progress else True, dynamic_ncols=True) as bar:
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                results += worker(job)
                bar.update(len(job[2]))
            return results
        # spawn: every worker opens its own EGL context; forking a process that holds one is unsafe.
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for records in pool.imap_unordered(worker, jobs):
                results += records
                bar.update(len(records))
    return results


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, object]:
    """Record expert demonstrations: one .npz per episode (+ bags), then index.json.

    Returns:
        A summary: out_dir, index path, episodes, successes, per-task success counts, wall time.
    """
    prepare_out_dir(cfg.out_dir, cfg.overwrite)
    if cfg.bag:
        (cfg.out_dir / "bags").mkdir(exist_ok=True)
    start = time.perf_counter()
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    jobs = [(*chunk, cfg) for chunk in _chunks(((t, cfg.variation) for t in cfg.tasks), seeds)]
    entries = run_parallel(_collect_chunk, jobs, cfg.workers, len(cfg.tasks) * cfg.episodes, "collect", progress)
    index = write_index(cfg.out_dir, entries, cfg.image_size, CONTROL_RATE_HZ)
    per_task = {t: sum(bool(e["success"]) for e in entries if e["task"] == t) for t in cfg.tasks}
    return {"out_dir": str(cfg.out_dir), "index": str(index), "episodes": len(entries),
            "successes": sum(per_task.values()), "per_task": per_task, "bags": cfg.bag,
            "steps": sum(int(e["num_steps"]) for e in entries), "wall_s": time.perf_counter() - start}


@dataclass
class ExpertCheckResult:
    """Expert success per task and variation.

    Attributes:
        rates: {task: {variation: success rate in [0, 1]}}.
        records: one record per episode (task, variation, seed, success, num_steps).
        episodes: episodes per (task, variation).
        wall_s: wall-clock duration of the check.
    """

    rates: dict[str, dict[str, float]]
    records: list[dict[str, object]]
    episodes: int
    wall_s: float

    def worst(self) -> tuple[str, str, float]:
        """The (task, variation, rate) with the lowest rate."""
        return min(((t, v, r) for t, row in self.rates.items() for v, r in row.items()), key=lambda x: x[2])


def expert_check(tasks: Sequence[str] = ("all",), variations: Sequence[str] = tuple(VARIATIONS), episodes: int = 10,
                 seed: int = 0, workers: int | None = None, progress: bool = True) -> ExpertCheckResult:
    """Run the scripted expert without rendering and measure its success rate per task and variation.

    Returns:
        The rates and per-episode records.

    Raises:
        ConfigError: unknown task / variation, or impossible counts.
    """
    names = SUITE.resolve(tasks)
    for v in variations:
        get_variation(v)
    workers = default_workers() if workers is None else workers
    _check_counts(episodes, workers)
    start = time.perf_counter()
    seeds = list(range(seed, seed + episodes))
    jobs = _chunks(((t, v) for t in names for v in variations), seeds)
    records = run_parallel(_check_chunk, jobs, workers, len(names) * len(variations) * episodes, "expert-check",
                           progress)
    rates: dict[str, dict[str, float]] = {t: {} for t in names}
    for t in names:
        for v in variations:
            ok = [r["success"] for r in records if r["task"] == t and r["variation"] == v]
            rates[t][v] = sum(ok) / len(ok)
    return ExpertCheckResult(rates, sorted(records, key=lambda r: (r["task"], r["variation"], r["seed"])), episodes,
                             time.perf_counter() - start)
