"""Live alpha changes at the sizes users run: parameter change -> serving, control-loop blocking, peak memory.

    .venv/bin/python bench/live_swap_bench.py --params 1e9 [--dtype fp32|pi0] [--layouts streamed,resident]
        [--swap-modes standby,in_place] [--device cpu|cuda] [--changes 6]
    .venv-lerobot/bin/python bench/live_swap_bench.py --lerobot-pi0 full --device cuda

Each case runs in a child process, so its peak memory is its own. The node's `ModelManager` serves a base + finetuned
pair; a control thread ticks at 15 Hz and calls `take_swap()` between ticks, as the node's control loop does between
chunks; the main thread changes alpha `--changes` times and waits each time until the new model serves. Reported:

- change -> serving: from `request()` (what `ros2 param set` triggers) to the control thread serving the new weights;
  merge: the merge into the standby copy alone;
- control loop: the longest `take_swap()` and the longest interval between two ticks, against the period;
- swap_mode in_place (one model copy): how long the arm is held per change, from the manager's `on_hold` (the node
  stops the running motion there) until the control thread serves the merged weights;
- memory: peak RSS of the child after loading and during the changes (VmHWM, reset in between), as a multiple of one
  checkpoint's size; on CUDA the peak device memory; and the layout's own accounting (`merge.live.plan_memory`).

Synthetic pairs (`--dtype fp32`: 16 flat tensors; `pi0`: pi0's names and dtype mix, `merge.synthetic`) are served by
a weights-only stand-in policy (no inference); `--lerobot-pi0` builds LeRobot's pi0 from its config with random
weights (tokenizer made locally, as in the tests; `full` = the real size, `tiny` = the tests' size) and measures
inference too. Files are written once under `--out-dir` and reused. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "lerobot_backend"))  # the tests' LeRobot checkpoint builders (--lerobot-pi0)
PERIOD_S = 1 / 15


# ---------------------------------------------------------------------------------------------- memory readings
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def peak_rss_bytes() -> int:
    """This process's peak resident memory since start or the last `reset_peak_rss` (VmHWM)."""
    return _status_kb("VmHWM") * 1024


def reset_peak_rss() -> None:
    """Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def checkpoint_bytes(path: Path) -> int:
    """Bytes of a checkpoint's weight files."""
    files = [path] if path.is_file() else list(path.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files)


# ------------------------------------------------------------------------------------------------- checkpoints
def write_pair(root: Path, params: float, dtype: str) -> tuple[Path, Path]:
    """A base and a finetuned-looking copy (weights moved by small noise) of about `params` parameters, reused."""
    from safetensors.torch import save_file

    from retain_ros.merge.synthetic import Pi0LikeShape, finetuned_copy, pi0_like_layout, random_state

    base, ft = root / f"base-{dtype}-{params:.3g}.safetensors", root / f"ft-{dtype}-{params:.3g}.safetensors"
    if base.is_file() and ft.is_file():
        return base, ft
    root.mkdir(parents=True, exist_ok=True)
    if dtype == "pi0":
        state = random_state(pi0_like_layout(Pi0LikeShape.with_parameters(params)), seed=0)
    else:
        n = int(params) // 16
        gen = torch.Generator().manual_seed(0)
        state = {f"action_expert.w{i}": torch.randn(n, generator=gen) * 0.02 for i in range(16)}
    save_file(state, str(base))
    save_file(finetuned_copy(state, seed=1), str(ft))
    return base, ft


class WeightsOnlyPolicy:
    """The weight side of the Policy protocol for a checkpoint no model class fits (a stand-in; no inference)."""

    def __init__(self, path: str, device: str = "cpu"):
        from retain_ros.merge.checkpoint import Checkpoint
        from retain_ros.policy.interface import PolicySpec

        with Checkpoint(path) as checkpoint:  # pread: no file pages counted in this process's memory
            self._serving = {n: checkpoint.read_tensor(n).to(device) for n in checkpoint.specs}
        self._spares: dict[str, dict[str, torch.Tensor]] = {}
        self.spec = PolicySpec(camera_names=("exterior",), image_size=(8, 8))

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        return iter(self._serving.items())

    def weight_targets(self, which: str = "standby") -> dict[str, list[torch.Tensor]]:
        if which == "serving":
            return {n: [t] for n, t in self._serving.items()}
        if which not in self._spares:
            self._spares[which] = {n: t.clone() for n, t in self._serving.items()}  # a copy, as a deepcopy is
        return {n: [t] for n, t in self._spares[which].items()}

    def promote_standby(self, which: str = "standby") -> None:
        self._serving, self._spares[which] = self._spares[which], self._serving

    def release_standby(self, which: str | None = None) -> None:
        if which is None:
            self._spares.clear()
        else:
            self._spares.pop(which, None)

    def spare_copies(self) -> tuple[str, ...]:
        return tuple(self._spares)


# ----------------------------------------------------------------------------------------------- measurement
def measure_changes(manager, request_for: Callable[[float], object], alphas: list[float],
                    predict: Callable[[object], object] | None = None) -> dict:
    """Change alpha once per entry of `alphas` while a control thread ticks at 15 Hz; timings in seconds."""
    ticks: list[float] = []
    swaps: list[float] = []
    served: dict[float, float] = {}
    held: list[float] = []  # in place: when each hold began
    pauses: list[float] = []
    stop = threading.Event()
    manager.on_hold = lambda reason: held.append(time.perf_counter())

    def control_thread():
        next_tick = time.perf_counter()
        while not stop.is_set():
            ticks.append(time.perf_counter())
            t0 = time.perf_counter()
            swapped = manager.take_swap()
            if swapped is not None:
                swaps.append(time.perf_counter() - t0)
                served[swapped.request.alpha] = time.perf_counter()
                if swapped.in_place:
                    pauses.append(served[swapped.request.alpha] - held[-1])
            if predict is not None and not manager.holding:  # as the node's loop: nothing while the arm is held
                with manager.weights_lock:
                    predict(manager.serving)
            next_tick += PERIOD_S
            time.sleep(max(0.0, next_tick - time.perf_counter()))

    thread = threading.Thread(target=control_thread, daemon=True)
    thread.start()
    changes, merges, asked_at = [], [], []
    try:
        for alpha in alphas:
            served.pop(alpha, None)  # a recipe served before (a switch back) counts from this request
            asked = time.perf_counter()
            asked_at.append(asked)
            manager.request(request_for(alpha))
            while alpha not in served:
                if manager.last_error:
                    raise RuntimeError(manager.last_error)
                time.sleep(0.001)
            changes.append(served[alpha] - asked)
            merges.append(manager.serving.merge_s)
            time.sleep(3 * PERIOD_S)
    finally:
        stop.set()
        thread.join()
    intervals = np.diff(ticks)
    return {"change_to_serving_s": changes, "merge_s": merges, "swap_max_s": max(swaps), "held_s": pauses,
            "tick_interval_max_s": float(intervals.max()), "period_s": PERIOD_S,
            "late_ticks": int(np.count_nonzero(intervals > 1.5 * PERIOD_S)), "ticks": len(ticks),
            "late_after_request_s": [round(ticks[i] - max([a for a in asked_at if a <= ticks[i]], default=ticks[0]), 3)
                                     for i in np.nonzero(intervals > 1.5 * PERIOD_S)[0]]}


def inference_times(policy, repeats: int = 10) -> list[float]:
    """Seconds per predict on a fixed observation (pi0's cameras at 224 px)."""
    from retain_ros.policy.interface import Observation

    images = {c: np.zeros((224, 224, 3), np.uint8) for c in policy.spec.camera_names}
    obs = Observation(images, np.zeros(7), 0.0, "pick up the red block", 0)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        policy.predict(obs)
        times.append(time.perf_counter() - t0)
    return times[1:]  # the first one warms up


def child(args: argparse.Namespace) -> dict:
    """One case in this process: load, then change alpha several times; returns the measurements."""
    if args.lerobot_pi0 == "tiny":  # LeRobot builds the model from config.json: at the tests' size only inside this
        import lerobot_helpers

        with lerobot_helpers.tiny_pi_models():
            return _child(args)
    return _child(args)


def _child(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    from retain_ros.serving.model_manager import MergeRequest, ModelManager

    base, ft = args.base, args.ft
    manager = ModelManager(args.device, swap_mode=args.swap_mode)
    if not args.lerobot_pi0:
        manager._load = lambda checkpoint, *_: WeightsOnlyPolicy(checkpoint, args.device)  # no model class fits
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def request_for(alpha: float):
        return MergeRequest(base, (ft,), alpha, preset=args.preset, layout=args.layout)

    t0 = time.perf_counter()
    first = manager.load_initial(request_for(0.5))
    if args.merge_threads and manager._merger is not None:
        manager._merger.threads = args.merge_threads
    result = {"load_s": time.perf_counter() - t0, "peak_rss_load": peak_rss_bytes(),
              "checkpoint_bytes": checkpoint_bytes(Path(base)), "memory": manager.memory(),
              "params": sum(t.numel() for _, t in first.policy.named_parameters()),
              "merge_threads": manager._merger.threads if manager._merger is not None else 0}
    if args.device.startswith("cuda"):
        result["device_peak_load"] = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    predict = None
    if args.lerobot_pi0:
        result["inference_s"] = inference_times(first.policy)
        obs_policy = first.policy
        images = {c: np.zeros((224, 224, 3), np.uint8) for c in obs_policy.spec.camera_names}
        from retain_ros.policy.interface import Observation

        obs = Observation(images, np.zeros(7), 0.0, "pick up the red block", 0)
        predict = lambda model: model.policy.predict(obs)  # noqa: E731
    gc.freeze()  # as the node does after loading: no full collection scans the startup objects in the control loop
    reset_peak_rss()
    manager.start()
    try:
        while not manager.standby_ready:  # the worker makes the standby copy once, right after the start
            time.sleep(0.01)
        result["memory"] = manager.memory()  # with the standby copy (none in place)
        alphas = [round(0.1 + 0.8 * i / max(1, args.changes - 1), 4) for i in range(args.changes)]
        result.update(measure_changes(manager, request_for, alphas, predict))
        # switching between two recipes (an instruction and back): the second is kept in a spare copy, so after
        # the first round trip every switch is a reference swap found in the recipe cache (no merge)
        builds, hits = manager.counts["builds"], manager.counts["cache_hits"]
        switched = measure_changes(manager, request_for, [alphas[-2], alphas[-1]] * 3, predict)
        result["switch"] = {"change_to_serving_s": switched["change_to_serving_s"],
                            "merges": manager.counts["builds"] - builds,
                            "cache_hits": manager.counts["cache_hits"] - hits,
                            "swap_max_s": switched["swap_max_s"], "late_ticks": switched["late_ticks"],
                            "tick_interval_max_s": switched["tick_interval_max_s"]}
    finally:
        manager.stop()
    result["peak_rss_changes"] = peak_rss_bytes()
    if args.device.startswith("cuda"):
        result["device_peak_changes"] = torch.cuda.max_memory_allocated()
    return result


def lerobot_pair(root: Path, size: str) -> tuple[Path, Path]:
    """LeRobot pi0 base + finetuned copy with random weights (bf16), built with the tests' helpers, reused."""
    import contextlib

    import lerobot_helpers as helpers

    base, ft = root / f"lerobot-pi0-{size}-base", root / f"lerobot-pi0-{size}-ft"
    if not (ft / "model.safetensors").is_file():
        context = helpers.tiny_pi_models() if size == "tiny" else contextlib.nullcontext()
        with context:
            helpers.build_checkpoint("pi0", base, root / "assets", seed=0, dtype="bfloat16")
        helpers.finetuned_copy(base, ft, seed=1, scale=0.01)
    return base, ft


# ----------------------------------------------------------------------------------------------------- report
def report(name: str, r: dict) -> str:
    """One block of lines for one case."""
    gb, ckpt = 1e9, r["checkpoint_bytes"]
    change = r["change_to_serving_s"]
    lines = [f"{name}: {r['params'] / 1e9:.2f} B params, checkpoint {ckpt / gb:.2f} GB, layout {r['memory']['layout']}"
             f" ({r['memory']['reason']})",
             f"  parameter change -> serving  p50 {statistics.median(change):.3f} s, max {max(change):.3f} s "
             f"({len(change)} changes: {', '.join(f'{c:.2f}' for c in change)}; merge p50 "
             f"{statistics.median(r['merge_s']):.3f} s)",
             f"  control loop: swap max {r['swap_max_s'] * 1e6:.0f} us, longest tick interval "
             f"{r['tick_interval_max_s'] * 1e3:.1f} ms = {r['tick_interval_max_s'] / r['period_s']:.2f} periods; "
             f"{r['late_ticks']} of {r['ticks']} intervals over 1.5 periods (starting "
             f"{r['late_after_request_s']} s after a change request); merge threads {r['merge_threads']}",
             *([f"  one copy (in place): the arm held p50 {statistics.median(r['held_s']):.3f} s, max "
                f"{max(r['held_s']):.3f} s per change = {max(r['held_s']) / r['period_s']:.1f} periods without a "
                "command"] if r["held_s"] else []),
             f"  peak RSS: {r['peak_rss_load'] / gb:.2f} GB after loading, {r['peak_rss_changes'] / gb:.2f} GB during "
             f"changes = {r['peak_rss_changes'] / ckpt:.2f}x the checkpoint; accounting: device "
             f"{r['memory']['device_gb']:.2f} GB, pinned host {r['memory']['host_gb']:.2f} GB"]
    if "switch" in r:
        sw = r["switch"]
        times = sw["change_to_serving_s"]
        lines.append(f"  switching between two recipes ({len(times)} switches, as alternating instructions do): "
                     f"change -> serving p50 {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms "
                     f"= {max(times) / r['period_s']:.2f} periods; {sw['merges']} merges, {sw['cache_hits']} cache "
                     f"hits (reference swaps), swap max {sw['swap_max_s'] * 1e6:.0f} us, longest tick "
                     f"{sw['tick_interval_max_s'] / r['period_s']:.2f} periods")
    if "device_peak_changes" in r:
        lines.append(f"  device peak: {r['device_peak_load'] / gb:.2f} GB loading, "
                     f"{r['device_peak_changes'] / gb:.2f} GB during changes = "
                     f"{r['device_peak_changes'] / r['memory']['model_gb'] / gb:.2f}x the model")
    if "inference_s" in r:
        times = np.asarray(r["inference_s"]) * 1e3
        lines.append(f"  chunk inference p50 {np.percentile(times, 50):.1f} ms, p99 {np.percentile(times, 99):.1f} ms")
    return "\n".join(lines)


# The models of the "what fits where" table: one copy of the weights as the model holds them, and as stored.
FIT_MODELS = (("reference VLA (default size: 0.49M parameters, fp32)", 0.49e6, 4, 4),
              ("SmolVLA (0.45B, bf16)", 0.45e9, 2, 2),
              ("SmolVLA (0.45B, fp32)", 0.45e9, 4, 4),
              ("pi0 / pi0.5 (3.3B, bf16)", 3.3e9, 2, 2),
              ("pi0 / pi0.5 (3.3B, fp32 model, bf16 checkpoints)", 3.3e9, 4, 2),
              ("pi0 / pi0.5 (3.3B, fp32)", 3.3e9, 4, 4))
GPUS_GB = (24, 48, 80)
CONTEXT_GB = 1.0  # CUDA context and allocator slack, roughly


def fits_table() -> str:
    """Markdown table: the layout `merge_layout: auto` picks per model and GPU, with its device memory (GB)."""
    from retain_ros.merge.live import _HEADROOM_BYTES, plan_memory

    rows = ["| model (one finetuned) | weights | " + " | ".join(f"{g} GB GPU" for g in GPUS_GB) + " | CPU (RAM) |",
            "|---|---|" + "---|" * (len(GPUS_GB) + 1)]
    for name, params, model_size, stored in FIT_MODELS:
        model, inputs = int(params * model_size), int(params * stored * 2)
        cells = []
        for gpu in GPUS_GB:
            free = int((gpu - CONTEXT_GB) * 1e9) - model  # what auto sees: the serving model is loaded
            plan = plan_memory("auto", model, inputs, "cuda", free_bytes=free)
            if plan.device_bytes > (gpu - CONTEXT_GB) * 1e9 - _HEADROOM_BYTES:
                cells.append(f"does not fit ({plan.device_bytes / 1e9:.1f} GB)")
            else:
                host = f" + {plan.host_bytes / 1e9:.1f} pinned host" if plan.host_bytes else ""
                cells.append(f"{plan.layout} {plan.device_bytes / 1e9:.3g}{host}")
        cpu = plan_memory("auto", model, inputs, "cpu")
        cells.append(f"{cpu.layout} {cpu.device_bytes / 1e9:.3g} + files in page cache")
        rows.append(f"| {name} | {model / 1e9:.3g} GB | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run_case(args: argparse.Namespace, base: Path, ft: Path, layout: str, preset: str, swap_mode: str) -> dict:
    """Run one case in a child process and return its measurements."""
    cmd = [sys.executable, __file__, "--child", "--base", str(base), "--ft", str(ft), "--layout", layout,
           "--swap-mode", swap_mode, "--preset", preset, "--device", args.device, "--changes", str(args.changes),
           "--merge-threads", str(args.merge_threads)]
    if args.lerobot_pi0:
        cmd += ["--lerobot-pi0", args.lerobot_pi0]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, (
        str(REPO), os.environ.get("PYTHONPATH", ""))))}  # this checkout's retain_ros; the hub is never asked
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode != 0:
        raise SystemExit(f"case {layout} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=1e9, help="synthetic checkpoint size in parameters")
    parser.add_argument("--dtype", choices=("fp32", "pi0"), default="fp32",
                        help="fp32: 16 flat fp32 tensors; pi0: pi0's names and dtype mix (mostly bf16)")
    parser.add_argument("--layouts", default="streamed,resident", help="merge layouts to measure, comma-separated")
    parser.add_argument("--swap-modes", default="standby", help="swap modes to measure, comma-separated: standby "
                        "(two copies), in_place (one copy, the arm held during each merge)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--changes", type=int, default=6, help="alpha changes per case")
    parser.add_argument("--lerobot-pi0", choices=("full", "tiny"), default=None,
                        help="measure a LeRobot pi0 with random weights instead (needs .venv-lerobot)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench_out" / "live_swap",
                        help="where the checkpoint pairs are written and kept")
    parser.add_argument("--merge-threads", type=int, default=0, help="CPU threads of the merge (default: the "
                        "merger's choice, one core less than the machine has)")
    parser.add_argument("--fits-table", action="store_true", help="print the 'what fits where' table (accounting "
                        "only, no measurement) and exit")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--ft", help=argparse.SUPPRESS)
    parser.add_argument("--layout", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--swap-mode", default="standby", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="all", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.fits_table:
        print(fits_table())
        return
    if args.lerobot_pi0:
        base, ft = lerobot_pair(args.out_dir, args.lerobot_pi0)
        name, preset = f"LeRobot pi0 ({args.lerobot_pi0}, bf16, random weights) on {args.device}", "pi0"
    else:
        t0 = time.perf_counter()
        base, ft = write_pair(args.out_dir, args.params, args.dtype)
        print(f"checkpoint pair ready in {time.perf_counter() - t0:.1f} s: {base.name}, {ft.name}", flush=True)
        name, preset = f"synthetic {args.dtype} on {args.device}", "all" if args.dtype == "fp32" else "pi0"
    for swap_mode in args.swap_modes.split(","):
        for layout in args.layouts.split(","):
            print(report(f"{name}, merge_layout {layout}, swap_mode {swap_mode}",
                         run_case(args, base, ft, layout, preset, swap_mode)), flush=True)


if __name__ == "__main__":
    main()
