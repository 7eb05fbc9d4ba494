#!/usr/bin/env python3
"""Benchmark `retain-merge` against mergekit-pytorch and a naive load/lerp/save script, and the resident re-merge.

One run builds a pi0-like bf16/fp32 checkpoint pair of about --params parameters (retain_ros.merge.synthetic, written
as two bare .safetensors files, so every tool reads the same bytes), then prints, with medians over --repeat rounds:

1. wall time and peak RSS of `retain-merge BASE FT --alpha 0.5 --out X -q --groups pi0` (subprocess),
2. the same for `mergekit-pytorch` (linear merge, weights 0.5/0.5) and
3. for a naive script (safetensors.torch.load_file both, torch.lerp, save_file), each as a ratio to retain-merge,
4. the resident re-merge throughput (ResidentMerger.merge into reused buffers) against torch.lerp over the same
   buffers, in GB/s counting 2 bytes read + 1 written per element byte.

Every tool runs under a small launcher process that fork/execs it and reads its peak RSS from os.wait4 (the launcher is
~10 MB, so the child's high-water mark is not inflated by this process's memory). Before every timed run the dirty
pages of the previous output are synced and both input files are read once, so each tool starts with a warm page cache.
Files go under --out-dir (default bench_out/merge_bench, gitignored) and are removed at the end unless --keep.

Run with the bench environment:  .venv-bench/bin/python bench/merge_bench.py   (or `make bench`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALPHA = 0.5
GOAL_SPEEDUP = 3.0  # retain-merge at least 3x faster than mergekit-pytorch end to end
GOAL_RSS = 1 / 3  # and at most 1/3 of its peak RSS
GOAL_RESIDENT = 0.5  # resident re-merge at least 50% of in-memory torch.lerp bandwidth

# Fork/exec one command, wait for it, print {"rc", "wall", "maxrss_kb", "cpu"} as JSON.
# Runs in its own small interpreter.
LAUNCHER = r"""
import json, os, sys, time
log, cmd = sys.argv[1], sys.argv[2:]
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "wall": wall, "maxrss_kb": ru.ru_maxrss,
                  "cpu": ru.ru_utime + ru.ru_stime}))
"""


def say(msg: str) -> None:
    print(msg, flush=True)


# -- the naive baseline (runs as its own process: `merge_bench.py --naive BASE FT OUT ALPHA`) ------------------------
def naive_merge(base: str, ft: str, out: str, alpha: float) -> None:
    """Load both files whole, lerp every floating tensor, save one file: what a hand-written script does."""
    import torch
    from safetensors.torch import load_file, save_file

    a = load_file(base)
    b = load_file(ft)
    merged = {}
    for name, t in a.items():
        merged[name] = torch.lerp(t, b[name], alpha) if t.is_floating_point() else t
    del b
    Path(out).mkdir(parents=True, exist_ok=True)
    save_file(merged, str(Path(out) / "model.safetensors"), metadata={"format": "pt"})


# -- the checkpoint pair ------------------------------------------------------------------------------------------
def count_parameters(shape) -> int:
    from retain_ros.merge.synthetic import pi0_like_layout

    return sum(math.prod(s) for _, s, _ in pi0_like_layout(shape))


def shape_for(target: float):
    """Pi0LikeShape.with_parameters(target), rescaled (same proportions) if its parameter count is far off target."""
    import dataclasses

    from retain_ros.merge.synthetic import Pi0LikeShape

    shape = Pi0LikeShape.with_parameters(target)
    got = count_parameters(shape)
    if abs(got / target - 1) <= 0.15:
        return shape, None

    def scaled(width: int):
        return dataclasses.replace(shape, vision_width=width // 2, width=width, expert_width=width // 2,
                                   vocab=width * 2)

    best = min(range(64, max(shape.width, 64) * 4 + 1, 64), key=lambda w: abs(count_parameters(scaled(w)) - target))
    note = (f"Pi0LikeShape.with_parameters({target:.3g}) gives {got / 1e9:.2f}e9 parameters "
            f"(width {shape.width}); using width {best} with the same proportions instead")
    return scaled(best), note


def build_pair(pair_dir: Path, target: float) -> tuple[Path, Path, dict]:
    """Write base.safetensors and ft.safetensors (reused when a previous --keep run left the same pair)."""
    from retain_ros.merge.synthetic import finetuned_copy, pi0_like_layout, random_state, write_checkpoint

    shape, note = shape_for(target)
    if note:
        say(f"note: {note}")
    layout = pi0_like_layout(shape)
    info = {"target": target, "shape": repr(shape), "tensors": len(layout),
            "parameters": sum(math.prod(s) for _, s, _ in layout),
            "by_dtype": {}}
    for _, s, dt in layout:
        info["by_dtype"][str(dt).replace("torch.", "")] = info["by_dtype"].get(str(dt).replace("torch.", ""), 0) \
            + math.prod(s)
    base, ft, stamp = pair_dir / "base.safetensors", pair_dir / "ft.safetensors", pair_dir / "pair.json"
    if base.is_file() and ft.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == info:
        say(f"reusing the checkpoint pair in {pair_dir}")
        return base, ft, info
    pair_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    say(f"building a pi0-like pair: {info['parameters'] / 1e6:.1f}M parameters in {len(layout)} tensors "
        f"({', '.join(f'{d} {n / 1e6:.1f}M' for d, n in info['by_dtype'].items())}) ...")
    state = random_state(layout, seed=0)
    write_checkpoint(base, state, layout="safetensors")
    tuned = finetuned_copy(state, seed=1)
    del state
    write_checkpoint(ft, tuned, layout="safetensors")
    del tuned
    stamp.write_text(json.dumps(info))
    say(f"  written in {time.perf_counter() - started:.1f} s: {base.stat().st_size / 1e9:.2f} GB + "
        f"{ft.stat().st_size / 1e9:.2f} GB")
    return base, ft, info


# -- timing one tool ----------------------------------------------------------------------------------------------
def warm_cache(files: list[Path]) -> float:
    """Read every input file once (so each tool starts from the same warm page cache); returns seconds."""
    started = time.perf_counter()
    block = bytearray(16 << 20)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(block):
                pass
    return time.perf_counter() - started


def launch(cmd: list[str], log: Path) -> dict:
    """Run `cmd` under the launcher; returns rc, wall (s), CPU (user+sys s) and peak RSS (bytes) of the command."""
    res = subprocess.run([sys.executable, "-c", LAUNCHER, str(log), *cmd], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"launcher failed: {res.stderr.strip()}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {"rc": out["rc"], "wall": out["wall"], "rss": out["maxrss_kb"] * 1024, "cpu": out["cpu"]}


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def tool_commands(bindir: Path, base: Path, ft: Path, work: Path) -> dict[str, dict]:
    """name -> {"cmd", "out"} for the three end-to-end tools (a tool whose executable is missing gets "missing")."""
    tools = {}
    retain = bindir / "retain-merge"
    tools["retain-merge"] = {"out": work / "retain_out",
                             "cmd": [str(retain), str(base), str(ft), "--alpha", str(ALPHA), "--out",
                                     str(work / "retain_out"), "-q", "--groups", "pi0"],
                             "missing": None if retain.exists() else f"{retain} not found (pip install -e . into "
                                                                     "this environment)"}
    # The same merge with every input hashed again: what the first merge of new checkpoints costs (the default run
    # above reuses input digests remembered from earlier merges of the unchanged files, as an alpha sweep does).
    tools["retain-merge, hash all"] = {**tools["retain-merge"], "out": work / "retain_out_hashed",
                                       "cmd": [*tools["retain-merge"]["cmd"][:6], str(work / "retain_out_hashed"),
                                               *tools["retain-merge"]["cmd"][7:], "--no-hash-cache"]}
    mergekit = bindir / "mergekit-pytorch"
    config = work / "mergekit.yml"
    config.write_text(f"merge_method: linear\n"
                      f"models:\n"
                      f"  - model: {base}\n    parameters:\n      weight: {1 - ALPHA}\n"
                      f"  - model: {ft}\n    parameters:\n      weight: {ALPHA}\n")
    tools["mergekit-pytorch"] = {"out": work / "mergekit_out",
                                 "cmd": [str(mergekit), str(config), str(work / "mergekit_out"), "--quiet"],
                                 "missing": None if mergekit.exists() else
                                 f"{mergekit} not found (pip install -r bench/requirements.txt)"}
    tools["naive load/lerp/save"] = {"out": work / "naive_out",
                                     "cmd": [sys.executable, str(Path(__file__).resolve()), "--naive", str(base),
                                             str(ft), str(work / "naive_out"), str(ALPHA)],
                                     "missing": None}
    return tools


# -- correctness --------------------------------------------------------------------------------------------------
def find_safetensors(out: Path) -> list[Path]:
    return sorted(out.glob("*.safetensors"))


def compare_outputs(ref_files: list[Path], other_files: list[Path]) -> dict:
    """Per dtype of the reference: tensors compared, bitwise equal, max |diff|; plus names/dtypes that differ."""
    import torch
    from safetensors import safe_open

    def open_all(files):
        handles = [safe_open(str(f), framework="pt") for f in files]
        return {n: h for h in handles for n in h.keys()}

    ref, other = open_all(ref_files), open_all(other_files)
    stats = {"missing": sorted(set(ref) - set(other)), "extra": sorted(set(other) - set(ref)), "dtype_changed": [],
             "by_dtype": {}}
    for name in ref:
        if name not in other:
            continue
        a, b = ref[name].get_tensor(name), other[name].get_tensor(name)
        key = str(a.dtype).replace("torch.", "")
        s = stats["by_dtype"].setdefault(key, {"tensors": 0, "equal": 0, "max_abs_diff": 0.0})
        s["tensors"] += 1
        if a.dtype != b.dtype:
            stats["dtype_changed"].append(f"{name}: {a.dtype} -> {b.dtype}")
        if a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(-1).view(torch.uint8) if a.numel() else a,
                                                                     b.view(-1).view(torch.uint8) if b.numel() else b):
            s["equal"] += 1
        elif a.shape == b.shape:
            s["max_abs_diff"] = max(s["max_abs_diff"], (a.double() - b.double()).abs().max().item())
    return stats


def describe_comparison(stats: dict) -> str:
    parts = [f"{d}: {s['equal']}/{s['tensors']} bitwise equal"
             + (f" (max |diff| {s['max_abs_diff']:.3g})" if s["equal"] < s["tensors"] else "")
             for d, s in stats["by_dtype"].items()]
    if stats["missing"]:
        parts.append(f"{len(stats['missing'])} tensors missing")
    if stats["extra"]:
        parts.append(f"{len(stats['extra'])} extra tensors")
    if stats["dtype_changed"]:
        parts.append(f"{len(stats['dtype_changed'])} dtypes changed (e.g. {stats['dtype_changed'][0]})")
    return "; ".join(parts)


# -- resident re-merge ----------------------------------------------------------------------------------------------
def bench_resident(base: Path, ft: Path, iters: int) -> dict:
    import torch

    from retain_ros.merge.resident import ResidentMerger

    started = time.perf_counter()
    merger = ResidentMerger.from_checkpoints(str(base), [str(ft)], groups="pi0")
    load_s = time.perf_counter() - started
    say(f"  loaded resident in {load_s:.2f} s ({merger.nbytes / 1e9:.2f} GB of inputs)")
    bufs = merger.allocate()
    nbytes = 3 * sum(b.numel() * b.element_size() for b in bufs.values())

    # The same tensors as plain flat buffers: a = theta_pre, b = theta_ft (exact copies via alpha 0 and 1).
    a, b, o = merger.allocate(), merger.allocate(), merger.allocate()
    merger.merge(0.0, out=a)
    merger.merge(1.0, out=b)

    def lerp_all():
        for key in o:
            torch.lerp(a[key], b[key], ALPHA, out=o[key])

    def remerge_once():
        merger.merge(ALPHA, out=bufs)

    remerge, lerp = [], []
    remerge_once()  # warm-up (page faults of fresh buffers, allocator)
    lerp_all()
    for _ in range(iters):  # interleaved, so both see the same load from other processes
        for fn, times in ((remerge_once, remerge), (lerp_all, lerp)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    same = all(torch.equal(o[k].view(torch.uint8) if o[k].numel() else o[k],
                           bufs[k].view(torch.uint8) if bufs[k].numel() else bufs[k]) for k in o)
    return {"load_s": load_s, "bytes": nbytes, "remerge": remerge, "lerp": lerp, "equal": same,
            "buffers": {f"{g}/{str(d).replace('torch.', '')}": t.numel() for (g, d), t in bufs.items()}}


# -- main ---------------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=float, default=5e8, help="parameters per checkpoint (default 5e8)")
    p.add_argument("--repeat", type=int, default=3, help="timed rounds per tool; medians are reported (default 3)")
    p.add_argument("--resident-iters", type=int, default=5, help="timed re-merges (after one warm-up; default 5)")
    p.add_argument("--out-dir", type=Path, default=REPO / "bench_out" / "merge_bench",
                   help="working directory (default bench_out/merge_bench, gitignored)")
    p.add_argument("--keep", action="store_true", help="keep the checkpoint pair and outputs (a later run reuses "
                                                       "the pair)")
    p.add_argument("--naive", nargs=4, metavar=("BASE", "FT", "OUT", "ALPHA"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.naive:
        base, ft, out, alpha = args.naive
        naive_merge(base, ft, out, float(alpha))
        return 0
    if args.repeat < 1 or args.resident_iters < 1:
        say("--repeat and --resident-iters must be >= 1")
        return 2
    sys.path.insert(0, str(REPO))  # retain_ros importable even without `pip install -e .`
    import torch

    work = args.out_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    say(f"merge bench: python {sys.executable}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, working dir {work}")
    try:
        base, ft, info = build_pair(work / "pair", args.params)
        inputs_gb = (base.stat().st_size + ft.stat().st_size) / 1e9
        tools = tool_commands(bindir, base, ft, work)
        for name, tool in tools.items():
            if tool["missing"]:
                say(f"skipping {name}: {tool['missing']}")
        runs: dict[str, list[dict]] = {n: [] for n in tools}
        failed: dict[str, str] = {}
        say(f"timing {', '.join(n for n, t in tools.items() if not t['missing'])} x {args.repeat} rounds "
            "(interleaved; before each run: previous output removed, sync, both inputs read once to warm the "
            "page cache)")
        checks: dict[str, str] = {}
        names = list(tools)
        for round_ in range(1, args.repeat + 1):
            shift = (round_ - 1) % len(names)  # rotate the order so no tool is always first after the clean-up
            for name in names[shift:] + names[:shift]:
                tool = tools[name]
                if tool["missing"] or name in failed:
                    continue
                shutil.rmtree(tool["out"], ignore_errors=True)
                os.sync()
                warm_s = warm_cache([base, ft])
                log = work / f"{name.split()[0].replace('/', '_')}.log"
                r = launch(tool["cmd"], log)
                os.sync()  # flush this tool's output outside every tool's timing
                if r["rc"] != 0:
                    failed[name] = f"exit {r['rc']}; log tail:\n{tail(log)}"
                    say(f"  round {round_}: {name} FAILED (exit {r['rc']}), see {log}:\n{tail(log)}")
                    continue
                runs[name].append(r)
                say(f"  round {round_}: {name:<22} {r['wall']:7.2f} s   CPU {r['cpu']:6.2f} s   peak RSS "
                    f"{r['rss'] / 1e9:6.2f} GB   (cache warm-up read {inputs_gb / warm_s:.1f} GB/s, load average "
                    f"{os.getloadavg()[0]:.1f})")
            if round_ == 1:
                checks = correctness(tools, runs)
            for name, tool in tools.items():
                if not args.keep or round_ < args.repeat:
                    shutil.rmtree(tool["out"], ignore_errors=True)

        say(f"resident re-merge: ResidentMerger.from_checkpoints(base, [ft], groups='pi0'), merge({ALPHA}, out=...) "
            f"x {args.resident_iters}, interleaved with torch.lerp over the same buffers, after one warm-up each")
        resident = bench_resident(base, ft, args.resident_iters)
        report(args, info, inputs_gb, tools, runs, failed, checks, resident)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work}")
    return 0


def correctness(tools: dict, runs: dict) -> dict[str, str]:
    """Compare the first round's outputs with the naive one (bitwise per tensor)."""
    naive = "naive load/lerp/save"
    checks = {}
    if not runs[naive]:
        return {"retain-merge": "not checked (the naive script did not run)"}
    ref = find_safetensors(tools[naive]["out"])
    for name in ("retain-merge", "mergekit-pytorch"):
        if not runs.get(name):
            continue
        files = find_safetensors(tools[name]["out"])
        if not files:
            checks[name] = f"no .safetensors in {tools[name]['out']}"
            continue
        stats = compare_outputs(ref, files)
        ok = (not stats["missing"] and not stats["dtype_changed"]
              and all(s["equal"] == s["tensors"] for d, s in stats["by_dtype"].items() if d == "bfloat16"))
        checks[name] = ("OK: " if ok else "DIFFERS: ") + describe_comparison(stats)
        say(f"  check {name} vs naive: {checks[name]}")
    return checks


def report(args, info, inputs_gb, tools, runs, failed, checks, resident) -> None:
    med = {n: (statistics.median(r["wall"] for r in rs), statistics.median(r["rss"] for r in rs),
               statistics.median(r["cpu"] for r in rs)) for n, rs in runs.items() if rs}
    ref = med.get("retain-merge")
    say("")
    say(f"== merge bench: {info['parameters'] / 1e6:.1f}M parameters per checkpoint "
        f"({', '.join(f'{d} {n / 1e6:.1f}M' for d, n in info['by_dtype'].items())}), inputs {inputs_gb:.2f} GB, "
        f"alpha {ALPHA} ==")
    say(f"end to end, median of {args.repeat} run(s); page cache warmed before every run by reading both inputs once; "
        "peak RSS = ru_maxrss and CPU = user+sys of the tool's process (os.wait4); load average now "
        f"{os.getloadavg()[0]:.1f} (other jobs on this machine inflate wall times)")
    say(f"{'tool':<24}{'wall s':>9}{'CPU s':>8}{'peak RSS GB':>13}{'wall / retain':>15}{'RSS / retain':>14}   "
        "runs, wall (s)")
    for name in tools:
        if name in med:
            wall, rss, cpu = med[name]
            ratio_w = f"{wall / ref[0]:.2f}x" if ref else "-"
            ratio_r = f"{rss / ref[1]:.2f}x" if ref else "-"
            each = ", ".join(f"{r['wall']:.2f}" for r in runs[name])
            say(f"{name:<24}{wall:>9.2f}{cpu:>8.2f}{rss / 1e9:>13.2f}{ratio_w:>15}{ratio_r:>14}   {each}")
        else:
            why = tools[name]["missing"] or (failed.get(name, "").splitlines() or ["not run"])[0]
            say(f"{name:<24}{'-':>9}{'-':>8}{'-':>13}{'-':>15}{'-':>14}   ({why})")
    for name, line in checks.items():
        say(f"check {name} vs naive: {line}")

    rm, lp = statistics.median(resident["remerge"]), statistics.median(resident["lerp"])
    gb = resident["bytes"] / 1e9
    say("")
    say(f"resident re-merge ({gb / 3:.2f} GB of weights; {gb:.2f} GB moved per merge = 2 read + 1 written; "
        f"median of {args.resident_iters} interleaved after a warm-up; load {resident['load_s']:.2f} s)")
    say(f"{'ResidentMerger.merge':<24}{rm * 1e3:>9.1f} ms{gb / rm:>9.1f} GB/s")
    say(f"{'torch.lerp same buffers':<24}{lp * 1e3:>9.1f} ms{gb / lp:>9.1f} GB/s")
    say(f"{'ratio':<24}{lp / rm:>12.0%}   (re-merge output {'==' if resident['equal'] else '!='} lerp output, "
        "bitwise)")

    say("")
    say("goals:")
    mk = med.get("mergekit-pytorch")
    if ref and mk:
        speed, rss = mk[0] / ref[0], ref[1] / mk[1]
        say(f"  >= {GOAL_SPEEDUP:.0f}x faster than mergekit-pytorch end to end: {speed:.2f}x  "
            f"{'MET' if speed >= GOAL_SPEEDUP else 'NOT MET'}")
        say(f"  <= 1/3 of mergekit-pytorch peak RSS: {rss:.3f} (1/{1 / rss:.1f})  "
            f"{'MET' if rss <= GOAL_RSS else 'NOT MET'}")
        say(f"  (for reference, CPU seconds, less sensitive to other jobs: mergekit-pytorch / retain-merge = "
            f"{mk[2] / ref[2]:.2f}x)")
        hashed = med.get("retain-merge, hash all")
        if hashed:
            say(f"  first merge of new inputs (every input hashed): {mk[0] / hashed[0]:.2f}x faster than "
                f"mergekit-pytorch, {hashed[1] / mk[1]:.3f} of its peak RSS")
    else:
        why = "retain-merge" if not ref else "mergekit-pytorch"
        say(f"  speed and RSS vs mergekit-pytorch: NOT MEASURED ({why} did not run: "
            f"{tools[why]['missing'] or (failed.get(why, 'no result').splitlines() or [''])[0]})")
    ratio = lp / rm
    say(f"  resident re-merge >= {GOAL_RESIDENT:.0%} of torch.lerp bandwidth: {ratio:.0%}  "
        f"{'MET' if ratio >= GOAL_RESIDENT else 'NOT MET'}")


if __name__ == "__main__":
    sys.exit(main())
