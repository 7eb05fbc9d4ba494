"""The report of `retain-eval bag`: report.json, report.md (tables per alpha and per episode), predictions.npz, plots.

report.json holds everything report.md shows plus the per-step / per-joint breakdowns; None stands for "nothing to
compare" (e.g. no gripper commands in the bag).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retain_ros.evaluate.targets import units


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(ci: list | None, digits: int = 4) -> str:
    return "" if ci is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def report_dict(cfg, evaluation, results: dict) -> dict:
    """The JSON-able report."""
    t = evaluation.timing
    forward_share = t.forward / t.total if t.total else 0.0
    return {
        "bags": [str(b) for b in cfg.bags], "base": str(cfg.base), "finetuned": [str(f) for f in cfg.finetuned],
        "alphas": list(cfg.alphas), "group_alpha": dict(cfg.group_alpha), "labels": evaluation.labels,
        "instruction_alphas": list(cfg.instruction_alphas),
        "group_preset": evaluation.merger.preset_name, "params": evaluation.settings.source,
        "target": results["target"], "units": units(results["target"], evaluation.policy.spec.action_space.kind),
        "joint_names": list(evaluation.settings.joint_names), "horizon": evaluation.policy.spec.horizon,
        "dt_s": evaluation.policy.spec.dt_s, "episodes": results["episodes"],
        "aggregate": results["aggregate"], "per_episode": results["per_episode"],
        "value": results.get("value"), "value_checkpoint": str(cfg.value) if cfg.value else None,
        "timing": {"total_s": t.total, "read_s": t.read, "forward_s": t.forward, "merge_s": t.merge,
                   "predictions": t.predictions, "bag_seconds": t.bag_seconds,
                   "real_time_multiple_per_alpha": (t.bag_seconds * len(cfg.alphas) / t.total) if t.total else None,
                   "outside_forward_share": 1.0 - forward_share},
    }


def markdown(report: dict) -> str:
    """report.md text: overall table per alpha, per-step MSE, per-joint MSE, per-episode tables."""
    unit = report["units"]
    lines = ["# retain-eval bag", "",
             f"Base `{report['base']}`, finetuned {', '.join(f'`{f}`' for f in report['finetuned'])}, "
             f"group preset `{report['group_preset']}`, params `{report['params']}`.",
             f"Compared with: **{report['target']}** ({unit}); horizon {report['horizon']} x {report['dt_s']:.4f} s; "
             f"{len(report['episodes'])} episode(s) from {len(report['bags'])} bag(s). "
             "Brackets: 95% bootstrap confidence intervals.", "",
             "## Per alpha", "",
             f"| alpha | MSE ({unit}^2) | MAE ({unit}) | gripper accuracy | observations |", "|---|---|---|---|---|"]
    for label in report["labels"]:
        a = report["aggregate"][label]
        lines.append(f"| {label} | {_fmt(a['mse'])}{_ci(a['mse_ci'])} | {_fmt(a['mae'])}{_ci(a['mae_ci'])} | "
                     f"{_fmt(a['gripper_accuracy'], 3)}{_ci(a['gripper_accuracy_ci'], 3)} | {a['observations']} |")
    if report.get("value"):
        lines += ["", f"## Value function `{report['value_checkpoint']}`", "",
                  "Mean Q of each alpha's own chunks on the bag's states (higher: the value function expects more "
                  "success):", "", "| alpha | mean Q | observations |", "|---|---|---|"]
        lines += [f"| {label} | {v['mean_q']:.4f} | {v['observations']} |" for label, v in report["value"].items()]
    horizon = report["horizon"]
    lines += ["", "## MSE per horizon step", "", "| alpha | " + " | ".join(f"h{h}" for h in range(horizon)) + " |",
              "|---" * (horizon + 1) + "|"]
    for label in report["labels"]:
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in report["aggregate"][label].get(
            "per_step_mse", [None] * horizon)) + " |")
    joints = report["joint_names"]
    lines += ["", "## MSE per joint", "", "| alpha | " + " | ".join(joints) + " |", "|---" * (len(joints) + 1) + "|"]
    for label in report["labels"]:
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in report["aggregate"][label].get(
            "per_joint_mse", [None] * len(joints))) + " |")
    lines += ["", "## Per episode", ""]
    for label in report["labels"]:
        lines += [f"### alpha {label}", "", "| episode | MSE | MAE | gripper accuracy | observations | skipped |",
                  "|---|---|---|---|---|---|"]
        for ep in report["episodes"]:
            e = report["per_episode"][label][ep["name"]]
            lines.append(f"| {ep['name']} | {_fmt(e['mse'])} | {_fmt(e['mae'])} | {_fmt(e['gripper_accuracy'], 3)} "
                         f"| {ep['observations']} | {ep['skipped_stale']} |")
        lines.append("")
    t = report["timing"]
    lines += ["## Timing", "", f"{t['predictions']} predictions in {t['total_s']:.1f} s "
              f"(forward {t['forward_s']:.1f} s, reading {t['read_s']:.1f} s, merging {t['merge_s']:.2f} s); "
              f"each alpha ran at {_fmt(t['real_time_multiple_per_alpha'], 1)} x real time.", ""]
    return "\n".join(lines)


def write_report(cfg, evaluation, results: dict) -> dict[str, Path]:
    """Write report.json, report.md, predictions.npz and the plots into `cfg.out`; returns their paths."""
    from retain_ros.evaluate.plots import plot_error_vs_alpha, plot_traces

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    report = report_dict(cfg, evaluation, results)
    paths = {"json": out / "report.json", "md": out / "report.md", "npz": out / "predictions.npz"}
    paths["json"].write_text(json.dumps(report, indent=1) + "\n")
    paths["md"].write_text(markdown(report))
    np.savez_compressed(paths["npz"], **prediction_arrays(results))
    paths["error_plot"] = plot_error_vs_alpha(report, out / "error_vs_alpha.png")
    names = [e["name"] for e in results["episodes"] if e["observations"]][:cfg.trace_episodes]
    paths.update({f"trace {n}": p for n, p in zip(names, plot_traces(report, results["stacks"], names, out))})
    return paths


def summary_text(results: dict, paths: dict[str, Path]) -> str:
    """The one-screen summary printed at the end."""
    report = json.loads(paths["json"].read_text())
    unit = report["units"]
    rows = [f"retain-eval bag: {len(report['episodes'])} episode(s), target {report['target']} ({unit})",
            f"{'alpha':<22} {'MSE [95% CI]':<34} {'MAE':>9} {'gripper':>8} {'obs':>6}"]
    best = None
    for label in report["labels"]:
        a = report["aggregate"][label]
        rows.append(f"{label:<22} {_fmt(a['mse']) + _ci(a['mse_ci']):<34} {_fmt(a['mae']):>9} "
                    f"{_fmt(a['gripper_accuracy'], 3):>8} {a['observations']:>6}")
        if a["mse"] is not None and (best is None or a["mse"] < best[1]):
            best = (label, a["mse"])
    t = report["timing"]
    rows.append(f"lowest MSE at alpha {best[0]}" if best else "no comparable actions")
    if report.get("value"):
        q = report["value"]
        rows.append("mean Q: " + ", ".join(f"{label} {v['mean_q']:.4f}" for label, v in q.items())
                    + f"; highest at alpha {max(q, key=lambda label: q[label]['mean_q'])}")
    rows.append(f"{t['predictions']} predictions in {t['total_s']:.1f} s, {_fmt(t['real_time_multiple_per_alpha'], 1)}"
                f" x real time per alpha, {100 * t['outside_forward_share']:.0f}% outside the forward pass")
    rows.append("wrote " + ", ".join(str(p) for p in paths.values()))
    return "\n".join(rows)


def prediction_arrays(results: dict) -> dict[str, np.ndarray]:
    """Flat name -> array map of every prediction and target (for predictions.npz)."""
    out = {}
    for label, per in results["stacks"].items():
        for name, stack in per.items():
            out[f"{label}|{name}|predictions"] = stack.predictions
            out[f"{label}|{name}|targets"] = stack.targets
            out[f"{label}|{name}|stamps_ns"] = stack.stamps_ns
    return out
