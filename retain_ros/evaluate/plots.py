"""PNG plots of `retain-eval bag`: error vs alpha, and predicted vs recorded joint traces of a few episodes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_error_vs_alpha(report: dict, path: Path) -> Path:
    """MSE (with its bootstrap CI) and gripper accuracy against alpha; the routed entry as a dashed line."""
    alphas = np.array(report["alphas"], dtype=float)
    labels = report["labels"][:len(alphas)]
    agg = [report["aggregate"][label] for label in labels]
    routed = report["aggregate"].get("routed")
    mse = np.array([a["mse"] if a["mse"] is not None else np.nan for a in agg])
    lo = np.array([a["mse_ci"][0] if a["mse_ci"] else np.nan for a in agg])
    hi = np.array([a["mse_ci"][1] if a["mse_ci"] else np.nan for a in agg])
    acc = np.array([a["gripper_accuracy"] if a["gripper_accuracy"] is not None else np.nan for a in agg])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(alphas, mse, "o-")
    ax1.fill_between(alphas, lo, hi, alpha=0.25, label="95% CI")
    if routed is not None and routed["mse"] is not None:
        ax1.axhline(routed["mse"], color="tab:red", ls="--", label="routed (each episode at its recipe)")
    ax1.set(xlabel="alpha", ylabel=f"MSE ({report['units']})²", title=f"arm error vs {report['target']}")
    ax1.legend()
    ax2.plot(alphas, acc, "o-", color="tab:green")
    if routed is not None and routed["gripper_accuracy"] is not None:
        ax2.axhline(routed["gripper_accuracy"], color="tab:red", ls="--")
    ax2.set(xlabel="alpha", ylabel="gripper accuracy", ylim=(-0.05, 1.05), title="gripper open/close")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_traces(report: dict, stacks: Mapping[str, Mapping[str, object]], episodes: Sequence[str],
                out: Path) -> list[Path]:
    """Per episode: first predicted step at every alpha vs the recorded value, per joint, over time."""
    paths = []
    joints = report["joint_names"]
    for name in episodes:
        fig, axes = plt.subplots(2, (len(joints) + 2) // 2, figsize=(14, 5), squeeze=False)
        axes = axes.reshape(-1)
        recorded = None
        for label in report["labels"]:
            stack = stacks[label][name]
            t = (stack.stamps_ns - stack.stamps_ns[0]) * 1e-9 if len(stack.stamps_ns) else np.zeros(0)
            recorded = (t, stack.targets[:, 0, :]) if recorded is None else recorded
            for j in range(len(joints) + 1):
                axes[j].plot(t, stack.predictions[:, 0, j], lw=1, label=f"alpha {label}")
        if recorded is not None:
            for j in range(len(joints) + 1):
                axes[j].plot(recorded[0], recorded[1][:, j], "k--", lw=1.5, label="recorded")
        for j, title in enumerate([*joints, "gripper"]):
            axes[j].set_title(title, fontsize=9)
            axes[j].set_xlabel("s", fontsize=8)
        for ax in axes[len(joints) + 1:]:
            ax.axis("off")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{name}: predicted (step 0) vs recorded {report['target']} ({report['units']})")
        fig.tight_layout()
        path = out / f"traces_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
