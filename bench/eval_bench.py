"""Offline bag-evaluation benchmark: throughput in multiples of real time, and time outside the forward pass.

Goal: under 10% of the time outside the model's forward pass.

    .venv/bin/python bench/eval_bench.py [--steps 90] [--alphas 0.25,0.5,0.75] [--embedded] [--threads 1]

Records one simulated expert episode as a rosbag (15 Hz, two rgb8 cameras, joints, fingers, DROID actions, commands)
and runs `retain-eval bag`'s evaluation on it: the reference VLA at its default size with random base / finetuned
weights (or the embedded checkpoints with --embedded). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from retain_ros.evaluate.bag_eval import BagEvalConfig, BagEvaluation
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.reference_policy import random_policy
from retain_ros.sim.bag import write_episode_bag
from retain_ros.sim.env import EnvConfig, TabletopEnv
from retain_ros.sim.episode import run_expert_episode

MODELS = Path(__file__).resolve().parent.parent / "retain_ros" / "models"
GOAL_OUTSIDE_SHARE = 0.10


def checkpoints(root: Path, embedded: bool) -> tuple[Path, Path]:
    """(base, finetuned): the embedded pair, or default-size reference VLAs with unrelated random weights."""
    if embedded:
        return MODELS / "base", MODELS / "task_ft"
    config = ReferenceVLAConfig()
    return (random_policy(config, seed=1).save_pretrained(root / "base"),
            random_policy(config, seed=2).save_pretrained(root / "ft"))


def record_bag(root: Path, steps: int, image_size: int, storage: str) -> Path:
    """One expert episode of `steps` control steps as a bag."""
    with TabletopEnv("pick_red", "id", EnvConfig(image_size=image_size, max_steps=steps)) as env:
        episode = run_expert_episode(env, seed=5)
    return write_episode_bag(episode, root / "bag", storage=storage)


def main() -> None:
    """Run the benchmark and print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=90, help="control steps of the recorded episode (15 Hz)")
    parser.add_argument("--image-size", type=int, default=96, help="camera image side of the recording")
    parser.add_argument("--alphas", default="0.25,0.5,0.75", help="alphas of the sweep")
    parser.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"))
    parser.add_argument("--embedded", action="store_true", help="use retain_ros/models/{base,task_ft}")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    alphas = tuple(float(a) for a in args.alphas.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, finetuned = checkpoints(root, args.embedded)
        bag = record_bag(root, args.steps, args.image_size, args.storage)
        started = time.perf_counter()
        evaluation = BagEvaluation(BagEvalConfig(bags=[bag], base=base, finetuned=[finetuned], alphas=alphas,
                                                 out=root / "out", progress=False, resamples=200))
        load_s = time.perf_counter() - started
        evaluation.run()
    t = evaluation.timing
    outside = t.total - t.forward
    numbers = {
        "bag_seconds": t.bag_seconds, "alphas": len(alphas), "predictions": t.predictions, "load_s": load_s,
        "total_s": t.total, "forward_s": t.forward, "read_s": t.read, "merge_s": t.merge,
        "other_s": t.total - t.forward - t.read - t.merge,
        "forward_ms_per_prediction": 1e3 * t.forward / max(1, t.predictions),
        "real_time_multiple_per_alpha": t.bag_seconds * len(alphas) / t.total,
        "outside_forward_share": outside / t.total,
    }
    print(f"bag: {t.bag_seconds:.2f} s recorded, {args.image_size}px images, {args.storage}; "
          f"model: {'embedded' if args.embedded else 'default-size reference VLA'}, {args.threads} thread(s)")
    print(f"sweep of {len(alphas)} alphas: {t.predictions} predictions in {t.total:.2f} s "
          f"(+ {load_s:.2f} s loading policy and resident merger once)")
    print(f"  forward pass      {t.forward:8.2f} s  ({numbers['forward_ms_per_prediction']:.1f} ms / prediction)")
    print(f"  bag read + obs    {t.read:8.2f} s")
    print(f"  merge + swap      {t.merge:8.2f} s")
    print(f"  metrics, other    {numbers['other_s']:8.2f} s")
    print(f"throughput: {numbers['real_time_multiple_per_alpha']:.2f} x real time per alpha "
          f"({numbers['real_time_multiple_per_alpha'] / len(alphas):.2f} x for the whole sweep)")
    verdict = "met" if numbers["outside_forward_share"] < GOAL_OUTSIDE_SHARE else "NOT met"
    print(f"outside the forward pass: {100 * numbers['outside_forward_share']:.1f}% "
          f"(goal < {100 * GOAL_OUTSIDE_SHARE:.0f}%: {verdict})")
    if args.json:
        print(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
