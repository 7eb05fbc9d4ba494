"""`make demo`: the main job on what runs on a laptop with pip alone.

Builds a small pi0-like pretrained checkpoint and a finetuned copy, then runs what a RETAIN user does before going to
the robot: look at the parameter groups (dry run), merge at several alphas and a modality-specific variant (language
backbone merged, vision and action expert finetuned), inspect the provenance, and re-merge resident weights as the
live node does on `ros2 param set ... alpha`. Exits non-zero if any step fails.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

from retain_ros.merge.cli import main as retain_merge
from retain_ros.merge.maths import fingerprint_tensors
from retain_ros.merge.resident import ResidentMerger
from retain_ros.merge.synthetic import Pi0LikeShape, finetuned_copy, pi0_like_layout, random_state, write_checkpoint

log = logging.getLogger("retain_ros.demo")


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run_cli(*args: str) -> None:
    code = retain_merge(list(args))
    if code != 0:
        raise SystemExit(f"demo step failed: retain-merge {' '.join(args)} exited with {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retain_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="output folder (replaced if it exists)")
    parser.add_argument("--params", type=float, default=2e7, help="size of the generated model in parameters")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()

    step(f"1/5 generate a pi0-like base checkpoint and a finetuned copy ({args.params / 1e6:.0f}M parameters)")
    state = random_state(pi0_like_layout(Pi0LikeShape.with_parameters(args.params)), seed=0)
    base = write_checkpoint(out / "checkpoints" / "base", state, layout="sharded", shards=2)
    ft = write_checkpoint(out / "checkpoints" / "task_ft", finetuned_copy(state, seed=1), layout="sharded", shards=2)
    print(f"wrote {base} and {ft}")

    step("2/5 dry run: parameter groups of the pi0 preset")
    run_cli(str(base), str(ft), "--alpha", "0.5", "--groups", "pi0", "--dry-run")

    step("3/5 merge at alpha 0.25, 0.5, 0.75 and the modality-specific variant (language 0.5, rest 1)")
    merged = {}
    for alpha in ("0.25", "0.5", "0.75"):
        merged[alpha] = out / "merged" / f"alpha_{alpha}"
        run_cli(str(base), str(ft), "--alpha", alpha, "--groups", "pi0", "--out", str(merged[alpha]), "-q")
    modality = out / "merged" / "language_0.5"
    run_cli(str(base), str(ft), "--alpha", "1", "--group-alpha", "language=0.5", "--groups", "pi0",
            "--out", str(modality), "-q")

    step("4/5 provenance of the alpha 0.5 merge")
    run_cli("--inspect", str(merged["0.5"]))

    step("5/5 resident re-merge (what the live node does on a parameter change)")
    merger = ResidentMerger.from_checkpoints(base, [ft], groups="pi0")
    buffers, rows = merger.allocate(), []
    for alpha in (0.25, 0.5, 0.75):
        weights = merger.merge(alpha, out=buffers)
        rows.append((alpha, weights.seconds, weights.fingerprint()))
    same = rows[1][2] == fingerprint_checkpoint(merged["0.5"])

    print("\nsummary")
    print(f"  {'alpha':<8}{'re-merge ms':>12}  fingerprint        equals disk merge")
    for alpha, seconds, fingerprint in rows:
        flag = ("yes" if same else "NO") if alpha == 0.5 else ""
        print(f"  {alpha:<8}{seconds * 1e3:>12.1f}  {fingerprint[:16]}   {flag}")
    print(f"  resident inputs: {merger.nbytes / 1e6:.0f} MB; output folder: {out}")
    print(f"  total {time.perf_counter() - started:.1f} s")
    return 0 if same else 1


def fingerprint_checkpoint(path: Path) -> str:
    """Fingerprint of a merged checkpoint on disk, read with the safetensors library (not the merge engine)."""
    from safetensors.torch import load_file

    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(file)))
    return fingerprint_tensors(state)


if __name__ == "__main__":
    sys.exit(main())
