"""Timing of the simulated tabletop: physics steps/s, render ms per frame per camera and size, expert episode time,
and the time to collect 100 demonstration episodes.

    .venv/bin/python bench/sim_bench.py                       # quick (collects 8 episodes and scales to 100)
    .venv/bin/python bench/sim_bench.py --collect-episodes 100 # measure 100 for real

Prints numbers only; asserts nothing. Numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from retain_ros.sim.collect import CollectConfig, collect  # noqa: E402
from retain_ros.sim.env import DEFAULT_IMAGE_SIZE, EnvConfig, TabletopEnv  # noqa: E402
from retain_ros.sim.episode import run_expert_episode  # noqa: E402
from retain_ros.sim.physics import CAMERAS  # noqa: E402


def bench_physics(seconds: float) -> tuple[float, float]:
    """Raw MuJoCo steps/s and environment control steps/s (15 Hz DROID steps, no rendering)."""
    env = TabletopEnv("pick_red", "distractors", EnvConfig(render=False))
    env.reset(0)
    model, data = env.physics.model, env.physics.data
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mujoco.mj_step(model, data, nstep=100)
        n += 100
    raw = n / (time.perf_counter() - start)
    env.reset(0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(np.zeros(8))
        n += 1
    return raw, n / (time.perf_counter() - start)


def bench_render(sizes: list[int], frames: int) -> dict[tuple[int, str], float]:
    """Median ms per rendered frame, per image size and camera."""
    out = {}
    for size in sizes:
        with TabletopEnv("pick_red", "id", EnvConfig(image_size=size)) as env:
            env.reset(0)
            for cam in CAMERAS:
                env.render(cam)  # warm-up: context and textures
                times = []
                for _ in range(frames):
                    t = time.perf_counter()
                    env.render(cam)
                    times.append(time.perf_counter() - t)
                out[(size, cam)] = 1e3 * statistics.median(times)
    return out


def bench_episodes(episodes: int) -> tuple[float, float, float]:
    """Mean seconds per expert episode without and with rendering, and mean steps per episode (place task)."""
    results = []
    for render in (False, True):
        with TabletopEnv("place_red_on_yellow", "id", EnvConfig(render=render)) as env:
            start, steps = time.perf_counter(), 0
            for seed in range(episodes):
                steps += run_expert_episode(env, seed).num_steps
            results.append((time.perf_counter() - start) / episodes)
    return results[0], results[1], steps / episodes


def bench_collect(episodes: int, workers: int) -> tuple[float, int]:
    """Seconds to collect `episodes` rendered episodes (generalist tasks, round robin) with `workers` processes."""
    tasks = ("pick_red", "place_red_on_yellow", "push_green_left", "stack_red_on_blue")
    per_task = max(1, episodes // len(tasks))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CollectConfig(tasks=tasks, variation="id", episodes=per_task, out_dir=Path(tmp) / "d", workers=workers)
        summary = collect(cfg, progress=False)
    return float(summary["wall_s"]), int(summary["episodes"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each physics measurement")
    parser.add_argument("--frames", type=int, default=20, help="frames per render measurement")
    parser.add_argument("--sizes", default="64,96,128,224", help="image sizes to render")
    parser.add_argument("--episodes", type=int, default=3, help="expert episodes per timing")
    parser.add_argument("--collect-episodes", type=int, default=8, help="episodes to collect (scaled to 100)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="collection worker processes")
    args = parser.parse_args(argv)

    raw, control = bench_physics(args.seconds)
    print(f"physics: {raw:,.0f} MuJoCo steps/s; {control:,.1f} control steps/s at 15 Hz without rendering "
          f"({control / 15:.1f}x real time)")
    for (size, cam), ms in bench_render([int(s) for s in args.sizes.split(",")], args.frames).items():
        marker = "  <- default" if size == DEFAULT_IMAGE_SIZE else ""
        print(f"render {size:4d}x{size:<4d} {cam:9s}: {ms:6.1f} ms/frame ({1e3 / ms:5.1f} frames/s){marker}")
    plain, rendered, steps = bench_episodes(args.episodes)
    print(f"expert episode (place_red_on_yellow, {steps:.0f} steps): {plain:.2f} s without images, "
          f"{rendered:.2f} s with both cameras at {DEFAULT_IMAGE_SIZE}px")
    wall, n = bench_collect(args.collect_episodes, args.workers)
    print(f"collect: {n} episodes in {wall:.1f} s with {args.workers} worker(s) -> "
          f"{100 * wall / n:.0f} s per 100 episodes" + (" (scaled)" if n != 100 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
