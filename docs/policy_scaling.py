"""Draw docs/policy_scaling.png: closed-loop success against pretraining episodes, from `retain-eval sim` reports.

    .venv/bin/python docs/policy_scaling.py SCALE1/report.json SCALE2/report.json

Scale 1 is the embedded base and its task-FT (`make study-resolve`'s first run), scale 2 the 1535-episode base and
its task-FT (docs/policy.md, "Both scales with each action's gripper"); both on seeds 7000+.
"""

import json
import sys

import matplotlib
import matplotlib.pyplot as plt

from retain_ros.evaluate.sim_report import wilson_interval

matplotlib.use("Agg")
EPISODES = (615, 1535)  # pretraining episodes of scale 1 and scale 2
ROWS = (("base", "generalist", "base, generalist suite"), ("task-FT", "id", "task-FT, target id"),
        ("RETAIN task-FT a=0.90", "id", "RETAIN task-FT a=0.9, target id"),
        ("RETAIN task-FT a=0.90", "generalist", "RETAIN task-FT a=0.9, generalist suite"))


def counts(report: dict, variant: str, column: str) -> tuple[int, int]:
    """(successes, episodes) of one row and column."""
    runs = [e["success"] for e in report["episodes"] if e["variant"] == variant and e["column"] == column]
    return sum(runs), len(runs)


def main(paths: list[str]) -> None:
    reports = [json.loads(open(p).read()) for p in paths]
    fig, ax = plt.subplots(figsize=(6, 5))
    for (variant, column, label), marker in zip(ROWS, "osD^"):
        cells = [counts(r, variant, column) for r in reports]
        rate = [k / n for k, n in cells]
        low = [r - wilson_interval(k, n)[0] for r, (k, n) in zip(rate, cells)]
        high = [wilson_interval(k, n)[1] - r for r, (k, n) in zip(rate, cells)]
        ax.errorbar(EPISODES, rate, yerr=[low, high], marker=marker, capsize=4, label=label)
    ax.axhline(0.7, color="grey", ls=":", lw=1)
    ax.text(640, 0.715, "goal for the base: 0.7", color="grey", fontsize=8)
    ax.set_xlim(350, 1800)
    ax.set_xticks(EPISODES, [f"{e}\n(scale {i + 1})" for i, e in enumerate(EPISODES)])
    ax.set_xlabel("pretraining episodes (30k steps each)")
    ax.set_ylabel("closed-loop success [95% Wilson]")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    ax.set_title("Pretraining scale: the base gains, the task-FT merges keep none of it", fontsize=9)
    fig.tight_layout()
    fig.savefig("docs/policy_scaling.png", dpi=110)


if __name__ == "__main__":
    main(sys.argv[1:3])
