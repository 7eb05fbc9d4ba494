"""`retain-sim`: list tasks and variations, check the expert, collect demonstrations, render episode strips.

Exit codes: 0 ok, 1 the expert check fell below --min-success, 2 a user error (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from retain_ros.cli_errors import run_reporting_errors
from retain_ros.sim.collect import CollectConfig, ExpertCheckResult, collect, default_workers, expert_check
from retain_ros.sim.env import DEFAULT_IMAGE_SIZE, make_task
from retain_ros.sim.physics import CAMERAS
from retain_ros.sim.strip import render_strip, save_strip
from retain_ros.sim.tasks import SUITE, TAGS
from retain_ros.sim.variations import VARIATIONS

log = logging.getLogger("retain_ros.sim")


def _split(values: Sequence[str]) -> list[str]:
    """Accept both `--tasks a b` and `--tasks a,b`."""
    return [v for value in values for v in value.split(",") if v]


def cmd_list(args: argparse.Namespace) -> int:
    """Print the tasks (with tags and instructions) and the variations."""
    tasks = [{"name": n, "tags": sorted(SUITE.get(n).tags), "instruction": SUITE.get(n).instruction,
              "max_steps": SUITE.get(n).max_steps} for n in SUITE.names()]
    variations = [{"name": v.name, "description": v.description} for v in VARIATIONS.values()]
    if args.json:
        print(json.dumps({"tasks": tasks, "variations": variations}, indent=1))
        return 0
    for tag in TAGS:
        print(f"{tag} tasks:")
        for t in tasks:
            if tag in t["tags"]:
                print(f"  {t['name']:30s} \"{t['instruction']}\"")
    print("variations:")
    for v in variations:
        print(f"  {v['name']:12s} {v['description']}")
    return 0


def _print_check(result: ExpertCheckResult, variations: Sequence[str]) -> None:
    print(f"expert success over {result.episodes} episode(s) per cell ({result.wall_s:.0f} s):")
    print(f"  {'task':30s}" + "".join(f"{v:>13s}" for v in variations))
    for task, row in result.rates.items():
        print(f"  {task:30s}" + "".join(f"{100 * row[v]:12.0f}%" for v in variations))
    task, variation, rate = result.worst()
    print(f"lowest: {task} / {variation} at {100 * rate:.0f}%")


def cmd_expert_check(args: argparse.Namespace) -> int:
    """Run the expert on every task x variation and report success rates."""
    variations = _split(args.variations)
    result = expert_check(_split(args.tasks), variations, args.episodes, args.seed, args.workers,
                          progress=not args.json)
    if args.json:
        print(json.dumps({"episodes": result.episodes, "rates": result.rates, "wall_s": result.wall_s,
                          "records": result.records}, indent=1))
    else:
        _print_check(result, variations)
    return 0 if result.worst()[2] >= args.min_success else 1


def cmd_collect(args: argparse.Namespace) -> int:
    """Collect expert demonstrations into a dataset (and bags)."""
    cfg = CollectConfig(tasks=tuple(_split(args.tasks)), variation=args.variation, episodes=args.episodes,
                        out_dir=Path(args.out), seed=args.seed, workers=args.workers, bag=args.bag,
                        bag_storage=args.bag_storage, image_size=args.image_size, noise_rad_s=args.noise,
                        overwrite=args.overwrite)
    summary = collect(cfg)
    print(f"collected {summary['episodes']} episode(s), {summary['steps']} steps, in {summary['wall_s']:.1f} s")
    for task, ok in summary["per_task"].items():
        print(f"  {task:30s} {ok}/{cfg.episodes} successful")
    print(f"dataset index: {summary['index']}" + (f"  (bags in {cfg.out_dir / 'bags'})" if cfg.bag else ""))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Render a PNG strip of the expert's episode in one or more variations."""
    make_task(args.task)  # unknown names fail before any rendering
    variations = _split(args.variation)
    for v in variations:
        make_task(args.task, v)
    cameras = list(CAMERAS) if args.camera == "both" else [args.camera]
    strip = render_strip(args.task, variations, args.seed, args.frames, cameras, args.image_size)
    path = save_strip(strip, Path(args.out))
    print(f"wrote {path} ({strip.width}x{strip.height})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `retain-sim`."""
    parser = argparse.ArgumentParser(prog="retain-sim", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list tasks and variations")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("expert-check", help="expert success rate per task x variation (no rendering)")
    p.add_argument("--tasks", nargs="+", default=["all"], help="task names or tags (generalist, target, all)")
    p.add_argument("--variations", nargs="+", default=list(VARIATIONS), help="variation names")
    p.add_argument("--episodes", type=int, default=20, help="episodes per task x variation (default 20)")
    p.add_argument("--seed", type=int, default=0, help="first episode seed")
    p.add_argument("--workers", type=int, default=default_workers(), help="worker processes")
    p.add_argument("--min-success", type=float, default=0.95, help="exit 1 if any cell is below this rate")
    p.add_argument("--json", action="store_true", help="machine-readable output (no progress bar)")
    p.set_defaults(func=cmd_expert_check)

    p = sub.add_parser("collect", help="record expert demonstrations (dataset, optionally rosbags)")
    p.add_argument("--tasks", nargs="+", required=True, help="task names or tags (generalist, target, all)")
    p.add_argument("--variation", default="id", help=f"one of: {', '.join(VARIATIONS)} (default id)")
    p.add_argument("--episodes", type=int, required=True, help="episodes per task")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (episode i: seed + i)")
    p.add_argument("--workers", type=int, default=default_workers(), help="worker processes")
    p.add_argument("--bag", action="store_true", help="also write one rosbag2 per episode under OUT/bags")
    p.add_argument("--bag-storage", default="sqlite3", choices=["sqlite3", "mcap"], help="rosbag2 storage")
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="camera image side in pixels")
    p.add_argument("--noise", type=float, default=0.0, metavar="RAD_S",
                   help="DART noise injection: std (rad/s) of correlated noise added to the executed joint velocities; "
                        "labels stay the expert's clean actions (default 0; 0.03-0.06 keeps the expert successful)")
    p.add_argument("--overwrite", action="store_true", help="write into a directory that already holds a dataset")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("render", help="PNG strip of an expert episode")
    p.add_argument("--task", required=True, help="task name")
    p.add_argument("--variation", nargs="+", default=["id"], help="one or more variations (one row block each)")
    p.add_argument("--seed", type=int, default=0, help="episode seed")
    p.add_argument("--frames", type=int, default=6, help="frames per row")
    p.add_argument("--camera", default="both", choices=[*CAMERAS, "both"], help="cameras to show")
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="image side in pixels")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=cmd_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `retain-sim`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reporting_errors("retain-sim", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
