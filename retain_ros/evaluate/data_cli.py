"""`retain-data`: recorded demonstrations -> a LeRobot dataset for `lerobot-train`, the first step of a RETAIN finetune.

    retain-data export demo_*.mcap --out ~/data/push_red --task "push the red cube onto the purple plate"

Bags recorded with the node's topics (README "Recording") or a plain franka_ros2 teleoperation bag (cameras, joint
states, gripper states; point `--params` at a params file with its topic names). Runs where LeRobot is installed
(.venv-lerobot). What each frame and action is: retain_ros/evaluate/bag_export.py.
"""

from __future__ import annotations

import argparse
import sys

from retain_ros.cli_errors import run_reporting_errors
from retain_ros.control.inputs import InputSettings
from retain_ros.errors import ConfigError

PROG = "retain-data"


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="bags -> a LeRobot dataset with DROID-style features")
    e.add_argument("bags", nargs="+", metavar="BAG", help="bag directories or .mcap / .db3 files, one episode each")
    e.add_argument("--out", required=True, help="dataset directory to create (must not exist)")
    e.add_argument("--task", default="", help="task text of every episode (default: the bag's instruction topic)")
    e.add_argument("--params", help="the node's params file with this robot's topic and joint names "
                   "(default: config/fr3_droid.yaml's values)")
    e.add_argument("--fps", type=int, default=15,
                   help="frames per second of the dataset (DROID: 15); every n-th camera frame is kept")
    e.add_argument("--episode-topic", default="",
                   help="a topic whose messages start episodes inside a bag (default: one episode per bag)")
    e.add_argument("--repo-id", default="local/retain_demos", help="the dataset's repo_id in its metadata")
    e.add_argument("--videos", action="store_true", help="store the cameras as MP4 (default: lossless PNG frames)")
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Export the bags."""
    from retain_ros.evaluate.bag_export import export_bag
    from retain_ros.evaluate.lerobot_dataset import write_dataset

    if args.fps <= 0:
        raise ConfigError(f"--fps {args.fps} must be > 0 (DROID: 15)")
    settings = InputSettings.from_file(args.params, instruction=args.task or None)
    episodes = []
    for bag in args.bags:
        found = export_bag(bag, settings, args.fps, args.episode_topic)
        for ep in found:
            print(f"{ep.name}: {len(ep.actions)} frames, task '{ep.task}'", file=sys.stderr)
        episodes += found
    out = write_dataset(episodes, args.out, args.fps, settings.joint_names, args.repo_id, args.videos)
    frames = sum(len(ep.actions) for ep in episodes)
    print(f"wrote {len(episodes)} episode(s), {frames} frames at {args.fps} fps -> {out} (LeRobot dataset; train with "
          f"lerobot-train --dataset.repo_id={args.repo_id} --dataset.root={out} ...)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `retain-data`."""
    args = build_parser().parse_args(argv)
    return run_reporting_errors(PROG, lambda: cmd_export(args))


if __name__ == "__main__":
    sys.exit(main())
