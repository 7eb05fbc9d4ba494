"""The report of a closed-loop comparison: success rates with Wilson intervals, report.md / .json, the sweep plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.evaluate.sim_eval import GENERALIST, ID, TARGET2, EvalConfig, Variant, checkpoints_used


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def is_ood_column(column: str) -> bool:
    """Whether a report column is an OOD family of the target (every column but `id`, the generalist and target 2)."""
    return column not in (ID, GENERALIST, TARGET2)


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
                chosen = [r for r in mine if is_ood_column(r["column"])]
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


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_report(cfg: EvalConfig, table: dict, records: Sequence[dict], wall_s: float) -> str:
    """The comparison in the paper's layout (ID, generalist, OOD) plus one column per OOD family."""
    families = list(cfg.ood)
    second = [TARGET2] if cfg.target2 else []
    heading = ["Method", ID.upper(), "Generalist", "OOD", *families] + [f"Target 2 `{cfg.target2}`"] * len(second)
    lines = [f"# RETAIN in simulation: target task `{cfg.target}`", "",
             f"Success rate [95% Wilson interval]; {cfg.episodes} episode(s) per target cell (seeds {cfg.seed}.."
             f"{cfg.seed + cfg.episodes - 1}), {cfg.generalist_episodes} per generalist task; {len(records)} "
             f"episodes in {wall_s / 60:.1f} min. "
             + (f"OOD pools the families {', '.join(families)}." if families else "No OOD family was run.")
             + (f" Target 2: the second skill's task in `id`, {cfg.episodes} episode(s)." if second else ""), "",
             _row(heading), _row(["---"] * len(heading))]
    for name, row in table.items():
        cells = [_fmt(row[c]) for c in [ID, GENERALIST, "ood", *families, *second]]
        lines.append(_row([name, *cells]))
    lines += ["", "Mean final task reward (1 = success, else shaped progress in [0, 0.9]):", "",
              _row(heading), _row(["---"] * len(heading))]
    for name, row in table.items():
        cells = [f"{row[c]['reward']:.3f}" for c in [ID, GENERALIST, "ood", *families, *second]]
        lines.append(_row([name, *cells]))
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
        points += [(1.0, v.name) for v in variants
                   if v.finetuned == key and v.alphas() is None and not v.routes]
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
    table = summarise(records, cfg.variants, [ID, GENERALIST, *cfg.ood] + ([TARGET2] if cfg.target2 else []))
    paths = {"json": out / "report.json", "md": out / "report.md", "plot": out / "alpha_sweep.png"}
    paths["json"].write_text(json.dumps({"config": config_record(cfg), "table": table, "wall_s": wall_s,
                                         "episodes": list(records)}, indent=1) + "\n")
    paths["md"].write_text(markdown_report(cfg, table, records, wall_s))
    sweep_plot(table, cfg.variants, paths["plot"])
    return paths


# Settings that do not change what an episode does: runs that differ only in these can be combined. The finetuned
# checkpoints must agree only between runs whose rows use them.
_RUN_ONLY = ("variants", "out", "workers", "task_ft", "co_ft", "task_ft2", "task_ft2_single", "record",
             "steering_checkpoint", "steering_samples", "steering_noise")
_STEERING = ("steering_checkpoint", "steering_samples", "steering_noise")


def read_report(report: str | Path) -> tuple[Path, dict]:
    """(path, content) of a `retain-eval sim` report.json, given the file or the folder holding it.

    Raises:
        ConfigError: the file is missing or is not JSON.
    """
    import json

    path = Path(report)
    path = path / "report.json" if path.is_dir() else path
    try:
        return path, json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} ({exc}); give report.json files (or their folders) of "
                          "`retain-eval sim`") from None


def combine_reports(reports: Sequence[str | Path], out: str | Path) -> tuple[EvalConfig, list[dict], float]:
    """One comparison from the report.json of several runs of the same settings with different rows (`--rows`).

    Returns the combined settings, every episode and the summed wall time; `write_report` writes them.

    Raises:
        ConfigError: a missing or unreadable report, settings that differ (the message names the setting and both
            values), or a row that two runs both hold.
    """
    runs = [read_report(report) for report in reports]
    if not runs:
        raise ConfigError("no report to combine")
    first_path, first = runs[0]
    settings = {k: v for k, v in first["config"].items() if k not in _RUN_ONLY}
    variants: list[Variant] = []
    owner: dict[str, Path] = {}
    records: list[dict] = []
    finetuned: dict[str, tuple[str, Path]] = {}  # checkpoint key -> (path, the first run whose rows use it)
    steering: tuple[dict, Path] | None = None  # the steering settings and the first run with steered rows
    for path, run in runs:
        for key, value in settings.items():
            if run["config"].get(key) != value:
                raise ConfigError(f"{path} was run with {key}={run['config'].get(key)!r} but {first_path} with "
                                  f"{value!r}; combine only runs of the same settings (they differ in rows only)")
        mine = []
        for data in run["config"]["variants"]:
            alpha = tuple(data["alpha"]) if isinstance(data["alpha"], list) else data["alpha"]
            variant = Variant(data["name"], data["finetuned"], alpha,
                              tuple((g, tuple(a) if isinstance(a, list) else a) for g, a in data["group_alpha"]),
                              tuple(data.get("routes", ())),
                              data.get("steering", "none"))
            if variant.name in owner:
                raise ConfigError(f"row '{variant.name}' is in both {owner[variant.name]} and {path}; keep it in one "
                                  "run (--rows)")
            owner[variant.name] = path
            mine.append(variant)
        for key in checkpoints_used(mine)[1:]:
            used, where = finetuned.setdefault(key, (run["config"].get(key), path))
            if used != run["config"].get(key):
                raise ConfigError(f"{path} ran its {key} rows with {run['config'].get(key)!r} but {where} with "
                                  f"{used!r}; combine only runs of the same checkpoints")
        if any(v.steering != "none" for v in mine):
            used = {k: run["config"].get(k) for k in _STEERING}
            if steering is None:
                steering = (used, path)
            elif used != steering[0]:
                raise ConfigError(f"{path} ran its steered rows with {used} but {steering[1]} with {steering[0]}; "
                                  "combine only runs of the same steering settings")
        variants += mine
        records += run["episodes"]
    config = dict(first["config"], variants=variants, out=str(out), **{k: p for k, (p, _) in finetuned.items()},
                  **(steering[0] if steering else {}))
    for key in ("ood", "generalist"):
        if config[key] is not None:
            config[key] = tuple(config[key])
    return EvalConfig(**config), records, float(sum(run["wall_s"] for _, run in runs))
