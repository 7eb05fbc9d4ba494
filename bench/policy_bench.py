"""Chunk inference latency of the reference VLA against the 66.7 ms period of 15 Hz control.

    .venv/bin/python bench/policy_bench.py                        # embedded base checkpoint, CPU (and CUDA if any)
    .venv/bin/python bench/policy_bench.py --checkpoint DIR --iters 200 --threads 1,2

Measures `Policy.predict` end to end (validation, resize with pad from 128x128 camera images, tokenisation, vision +
language prefix, `num_flow_steps` expert passes, unnormalisation) and, separately, the live-merge path: a resident
re-merge (`ResidentMerger.merge`) plus `load_merged`, and value-guided steering: K samples from one batched
forward scored by a value function (`Steerer` 'value'; the embedded value checkpoint, or one of its size built by
hand), as a ratio to the unsteered chunk. Prints p50 / p99 in ms and each as a fraction of the 15 Hz period. Prints
numbers only; asserts nothing. Numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy import load_policy
from retain_ros.policy.reference_policy import example_observation

PERIOD_MS = 1000.0 / 15.0
MODELS = Path(__file__).resolve().parent.parent / "retain_ros" / "models"


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms."""
    ms = np.array(samples_s) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench_predict(checkpoint: Path, device: str, iters: int, camera_size: int) -> list[float]:
    """Seconds per `predict` over `iters` calls after 5 warm-up calls."""
    policy = load_policy(checkpoint, device=device)
    obs = example_observation(policy.spec, size=(camera_size, camera_size))
    for _ in range(5):
        policy.predict(obs)
    times = []
    for _ in range(iters):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        policy.predict(obs)  # returns numpy, so the device work is finished here
        times.append(time.perf_counter() - started)
    return times


def bench_steered(checkpoint: Path, value_dir: Path, samples: int, iters: int, camera_size: int) -> list[float]:
    """Seconds per steered chunk (K samples in one forward + the value function's scores) after 5 warm-up calls."""
    from retain_ros.steering.selection import Steerer
    from retain_ros.steering.synthetic import first_joint_value
    from retain_ros.steering.value_function import ValueFunction

    policy = load_policy(checkpoint)
    if (value_dir / "config.json").is_file():
        value = ValueFunction.from_pretrained(value_dir)
    else:  # the embedded value function's size, weights built by hand
        value = first_joint_value(policy.spec, executed_steps=8, image_size=(64, 64), channels=(16, 32, 32, 32),
                                  feature_width=128, text_width=32, hidden=(256, 256))
    steerer = Steerer("value", samples, value)
    obs = example_observation(policy.spec, size=(camera_size, camera_size))
    for _ in range(5):
        steerer.choose(policy, obs)
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        steerer.choose(policy, obs)
        times.append(time.perf_counter() - started)
    return times


def bench_swap(base: Path, finetuned: Path, iters: int) -> tuple[list[float], list[float]]:
    """Seconds per resident re-merge and per `load_merged`, alternating alphas."""
    policy = load_policy(base)
    merger = ResidentMerger.from_checkpoints(base, [finetuned], groups="reference")
    merge_s, swap_s = [], []
    for i in range(iters):
        started = time.perf_counter()
        weights = merger.merge(0.25 + 0.5 * (i % 2))
        merge_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        policy.load_merged(weights.tensors)
        swap_s.append(time.perf_counter() - started)
    return merge_s, swap_s


def line(label: str, samples: list[float]) -> str:
    """One printed row: p50, p99 and their share of the control period."""
    p50, p99 = percentiles(samples)
    return (f"  {label:<34} p50 {p50:7.2f} ms ({p50 / PERIOD_MS:5.1%} of 66.7 ms)   "
            f"p99 {p99:7.2f} ms ({p99 / PERIOD_MS:5.1%})")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=MODELS / "base", help="policy checkpoint (default: base)")
    parser.add_argument("--finetuned", type=Path, default=MODELS / "co_ft", help="finetuned copy for the swap bench")
    parser.add_argument("--iters", type=int, default=100, help="timed calls per setting")
    parser.add_argument("--threads", default="1,2", help="torch CPU thread counts to try (comma-separated)")
    parser.add_argument("--camera-size", type=int, default=128, help="side of the input camera images (resized)")
    parser.add_argument("--value", type=Path, default=MODELS / "value", help="value checkpoint of the steering bench")
    parser.add_argument("--samples", type=int, default=10, help="K of the steering bench (default 10)")
    args = parser.parse_args(argv)
    if not (args.checkpoint / "config.json").is_file():
        print(f"no checkpoint at {args.checkpoint}; run `make models` or pass --checkpoint", file=sys.stderr)
        return 2
    policy = load_policy(args.checkpoint)
    params = sum(t.numel() for _, t in policy.named_parameters())
    cfg = policy.config
    print(f"reference VLA {args.checkpoint}: {params / 1e6:.3f} M parameters, horizon {cfg.horizon}, "
          f"{cfg.num_flow_steps} flow steps, image {cfg.image_size}, cameras {list(cfg.camera_names)}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch {torch.__version__}; "
          f"{os.cpu_count()} CPUs")
    print("predict (one chunk, end to end):")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        samples = bench_predict(args.checkpoint, "cpu", args.iters, args.camera_size)
        print(line(f"cpu, {threads} thread(s)", samples))
    torch.set_num_threads(1)
    plain = bench_predict(args.checkpoint, "cpu", args.iters, args.camera_size)
    steered = bench_steered(args.checkpoint, args.value, args.samples, args.iters, args.camera_size)
    print(f"value-guided steering (cpu, 1 thread, K = {args.samples} in one batch + value scores):")
    print(line("unsteered predict", plain))
    print(line(f"steered, K = {args.samples}", steered))
    print(f"  steered / unsteered: p50 {percentiles(steered)[0] / percentiles(plain)[0]:.2f}x, "
          f"p99 {percentiles(steered)[1] / percentiles(plain)[1]:.2f}x (goal: p99 <= 2x)")
    if torch.cuda.is_available():
        samples = bench_predict(args.checkpoint, "cuda", args.iters, args.camera_size)
        print(line(f"cuda ({torch.cuda.get_device_name()})", samples))
    else:
        print("  cuda: not available")
    if (args.finetuned / "config.json").is_file():
        merge_s, swap_s = bench_swap(args.checkpoint, args.finetuned, max(10, args.iters // 5))
        print("live merge (CPU):")
        print(line("ResidentMerger.merge", merge_s))
        print(line("load_merged (swap)", swap_s))
        print(f"  total new-alpha latency p50 {statistics.median(merge_s) * 1e3 + statistics.median(swap_s) * 1e3:.2f}"
              " ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
