"""Policy-node benchmark: inference latency, node overhead per chunk, live alpha changes at every model size.

    .venv/bin/python bench/node_bench.py [--repeats 50] [--synthetic-params 1e9] [--layouts streamed,resident]
                                         [--device cuda] [--lerobot-pi0 full]

Runs the node's plain-logic parts (no ROS graph, so DDS transport is not included): the reference VLA at its default
size with random base / finetuned weights written to a temp dir, and its command interval while alpha, or the steering
setting (value-guided steering on / off, another value function), changes live; optionally a large synthetic
checkpoint pair and a LeRobot pi0 with random weights, each measured in a child process of its own
(`bench/live_swap_bench.py`) so that its peak memory is its own. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import live_swap_bench

from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.reference_policy import example_observation, random_policy
from retain_ros.control import messages
from retain_ros.ros import conversions as conv
from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig, JointLimits
from retain_ros.control.inputs import GRIPPER, INSTRUCTION, JOINTS, InputSettings, NodeInputs
from retain_ros.control.control_loop import ControlLoop, Executed
from retain_ros.serving.model_manager import MergeRequest, ModelManager
from retain_ros.steering.manager import SteeringManager, SteeringSetting
from retain_ros.steering.synthetic import first_joint_value
from retain_ros.topics import FR3_ARM_JOINTS


def pct(values: list[float], q: float) -> float:
    """The q-th percentile in milliseconds."""
    return float(np.percentile(np.asarray(values) * 1e3, q))


def checkpoints(root: Path) -> tuple[str, tuple[str, ...]]:
    """Default-size reference VLA base + one finetuned copy with unrelated weights."""
    config = ReferenceVLAConfig()
    base = random_policy(config, seed=1).save_pretrained(root / "base")
    ft = random_policy(config, seed=2).save_pretrained(root / "ft")
    return str(base), (str(ft),)


def bench_inference(manager: ModelManager, repeats: int) -> None:
    """Forward pass vs everything the node adds around it for one chunk."""
    policy = manager.serving.policy
    spec = policy.spec
    obs = example_observation(spec, size=(128, 128))
    msgs = {c: conv.rgb_to_image(obs.images[c], "bgr8") for c in spec.camera_names}
    executor = ChunkExecutor(ExecutorConfig())
    q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
    obs.joint_positions = q
    forward, overhead = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        images = {c: messages.image_to_rgb(m) for c, m in msgs.items()}
        t1 = time.perf_counter()
        obs.images = images
        chunk = policy.predict(obs)
        t2 = time.perf_counter()
        plan = executor.plan(chunk.actions, chunk.dt_s, chunk.space.kind, 7, q, q, 0, 0)
        conv.trajectory(FR3_ARM_JOINTS, plan.times_s, plan.positions, plan.velocities)
        conv.action_chunk_message(Executed(chunk, plan, manager.serving, t2 - t1, 0, 1), 0)
        t3 = time.perf_counter()
        forward.append(t2 - t1)
        overhead.append((t1 - t0) + (t3 - t2))
    ratio = statistics.median(overhead) / statistics.median(forward)
    print(f"forward pass (predict)      p50 {pct(forward, 50):8.2f} ms   p99 {pct(forward, 99):8.2f} ms")
    print(f"node overhead per chunk     p50 {pct(overhead, 50):8.3f} ms   p99 {pct(overhead, 99):8.3f} ms   "
          f"= {100 * ratio:.1f}% of the forward pass (goal <= 5%)")
    print(f"image-to-command (2x128px bgr8 decode + predict + plan) p50 "
          f"{pct([a + b for a, b in zip(forward, overhead)], 50):.2f} ms, p99 "
          f"{pct([a + b for a, b in zip(forward, overhead)], 99):.2f} ms (DDS transport not included)")


def bench_swap(manager: ModelManager, base: str, ft: tuple[str, ...], repeats: int) -> None:
    """Parameter change -> ready model (merge into the standby copy) -> swap between chunks."""
    ready, merges, swaps = [], [], []
    for i in range(repeats):
        manager.request(MergeRequest(base, ft, 0.05 + 0.9 * (i % 10) / 10, preset="reference"))
        t0 = time.perf_counter()
        while manager._ready is None:
            time.sleep(0.0002)
        t1 = time.perf_counter()
        model = manager.take_swap()
        swaps.append(time.perf_counter() - t1)
        ready.append(t1 - t0)
        merges.append(model.merge_s)
    size = sum(t.numel() for _, t in manager.serving.policy.named_parameters())
    print(f"re-merge into the standby copy ({size / 1e6:.1f} M params, layout {manager.memory()['layout']}) "
          f"p50 {pct(merges, 50):8.3f} ms   p99 {pct(merges, 99):8.3f} ms")
    print(f"request -> ready            p50 {pct(ready, 50):8.2f} ms   p99 {pct(ready, 99):8.2f} ms")
    print(f"swap on the control thread  p50 {pct(swaps, 50) * 1e3:8.2f} us   p99 {pct(swaps, 99) * 1e3:8.2f} us")


def bench_live_changes(manager: ModelManager, base: str, ft: tuple[str, ...]) -> None:
    """Alpha changes while a control thread ticks at 15 Hz and runs inference, as in the node (live_swap_bench)."""
    obs = example_observation(manager.serving.policy.spec, size=(128, 128))
    result = live_swap_bench.measure_changes(manager, lambda a: MergeRequest(base, ft, a, preset="reference"),
                                             [0.2, 0.4, 0.6, 0.8, 0.3, 0.7], lambda model: model.policy.predict(obs))
    change = result["change_to_serving_s"]
    print(f"parameter change -> serving, control thread at 15 Hz with inference: p50 "
          f"{statistics.median(change) * 1e3:.1f} ms, max {max(change) * 1e3:.1f} ms; swap max "
          f"{result['swap_max_s'] * 1e6:.0f} us; longest tick interval {result['tick_interval_max_s'] * 1e3:.1f} ms "
          f"= {result['tick_interval_max_s'] / result['period_s']:.2f} periods; peak RSS "
          f"{live_swap_bench.peak_rss_bytes() / 1e9:.2f} GB (memory: {manager.memory()})")


def bench_jitter(manager: ModelManager, base: str, ft: tuple[str, ...], seconds: float, change_s: float,
                 steering: list[SteeringSetting] | None = None) -> None:
    """The control thread at 15 Hz with streams refreshed at 30 Hz, alpha (or, given `steering`, the steering
    setting, cycling through the list) changing every `change_s` (0 = never): intervals between published commands,
    against the chunk period."""
    spec = manager.serving.policy.spec
    chooser = SteeringManager(spec, True) if steering else None
    obs = example_observation(spec, size=(128, 128))
    inputs = NodeInputs(InputSettings(), tuple(spec.camera_names))
    streams = inputs.streams
    stamps: list[float] = []
    generations: list[int] = []

    def published(done) -> None:
        stamps.append(time.monotonic())
        # what serves: the model's generation, and the steering (mode and value function) that chose the chunk
        steered = done.steered
        generations.append(hash((done.model.generation, steered.mode if steered else "",
                                 id(chooser._steerer) if chooser else 0)))

    period = 1 / 15
    # limits far above what the random-weight model asks for: no segment is stretched to fit them, so the command
    # interval measures the loop's timing, not the chunk's length (the FR3's limits would stretch some chunks)
    loose = JointLimits(dq_max=(100.0,) * 7, ddq_max=(1e4,) * 7)
    loop = ControlLoop(inputs, manager, ChunkExecutor(ExecutorConfig(limits=loose, execute_steps=1)),
                       time.monotonic_ns, published, period, lambda: "pick", lambda level, msg: None,
                       steering=chooser)
    stop = threading.Event()

    def feed():
        while not stop.wait(1 / 30):
            now = time.monotonic_ns()
            for c in spec.camera_names:
                streams.put(c, obs.images[c], now)
            streams.put(JOINTS, messages.JointReading(np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])), now)
            streams.put(GRIPPER, 0.0, now)
            streams.put(INSTRUCTION, "pick", now)

    def change_alpha():
        for i in range(1, 10_000):
            if change_s <= 0 or stop.wait(change_s):
                return
            if steering:
                chooser.request(steering[i % len(steering)])
            else:
                manager.request(MergeRequest(base, ft, 0.1 + 0.8 * (i % 9) / 9, preset="reference"))

    threads = [threading.Thread(target=f, daemon=True) for f in (feed, change_alpha)]
    for t in threads:
        t.start()
    loop.start()
    time.sleep(seconds)
    loop.stop()
    stop.set()
    gaps = np.diff(stamps)
    if len(gaps) < 2:
        print("command-rate jitter: too few commands")
        return
    changed = np.array(generations[1:]) != np.array(generations[:-1])
    swaps = int(np.count_nonzero(changed))
    around_swaps = gaps[changed]
    what = "steering changes" if steering else "live swaps"
    print(f"command interval (execute_steps=1, 15 Hz, {len(stamps)} commands, {swaps} {what}): "
          f"mean {gaps.mean() * 1e3:.1f} ms, std {gaps.std() * 1e3:.1f} ms, "
          f"p99 {np.percentile(gaps, 99) * 1e3:.1f} ms, max {gaps.max() * 1e3:.1f} ms "
          f"= {gaps.max() / period:.2f} chunk periods")
    if len(around_swaps):
        steady = gaps[~changed]
        print(f"interval across a change: max {around_swaps.max() * 1e3:.1f} ms = {around_swaps.max() / period:.2f} "
              f"chunk periods, mean {around_swaps.mean() * 1e3:.1f} ms vs {steady.mean() * 1e3:.1f} ms between "
              "changes (goal: the same)")


def main() -> None:
    """Run every benchmark and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--jitter-seconds", type=float, default=5.0)
    parser.add_argument("--alpha-change-s", type=float, default=0.25, help="alpha changes this often in the "
                        "second command-interval run")
    parser.add_argument("--steering-samples", type=int, default=10, help="K of the steering-change run")
    parser.add_argument("--synthetic-params", type=float, default=0.0,
                        help="also measure live changes of a synthetic fp32 pair of this size, e.g. 1e9 (8 GB of "
                             "files; ~16 GB RAM for the resident layout); see bench/live_swap_bench.py")
    parser.add_argument("--layouts", default="streamed,resident", help="merge layouts for --synthetic-params")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base, ft = checkpoints(Path(tmp))
        manager = ModelManager()
        t0 = time.perf_counter()
        manager.load_initial(MergeRequest(base, ft, 0.5, preset="reference"))
        print(f"initial load + merge: {time.perf_counter() - t0:.2f} s")
        manager.start()
        try:
            bench_inference(manager, args.repeats)
            bench_swap(manager, base, ft, args.repeats)
            bench_live_changes(manager, base, ft)
            bench_jitter(manager, base, ft, args.jitter_seconds, 0.0)
            bench_jitter(manager, base, ft, args.jitter_seconds, args.alpha_change_s)
            spec = manager.serving.policy.spec
            values = [str(first_joint_value(spec, image_size=(64, 64)).save_pretrained(Path(tmp) / f"value{i}"))
                      for i in range(2)]
            cycle = [SteeringSetting("value", args.steering_samples, values[0]), SteeringSetting(),
                     SteeringSetting("value", args.steering_samples, values[1]), SteeringSetting()]
            bench_jitter(manager, base, ft, args.jitter_seconds, args.alpha_change_s, cycle)
        finally:
            manager.stop()
    if args.synthetic_params > 0:
        live_swap_bench.main(["--params", str(args.synthetic_params), "--layouts", args.layouts])


if __name__ == "__main__":
    main()
