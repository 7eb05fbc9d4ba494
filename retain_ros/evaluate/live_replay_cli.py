"""Command line of `retain-eval replay` (the rclpy part lives in live_replay.py and is imported only when run)."""

from __future__ import annotations

import argparse

from tqdm import tqdm

from retain_ros.bag_types import ACTION_CHUNK
from retain_ros.control.inputs import NODE_NAME, InputSettings

STRING = "std_msgs/msg/String"


def node_outputs(settings: InputSettings, node_name: str = NODE_NAME) -> dict[str, str]:
    """Topic -> type of what the policy node publishes: command, gripper width, ~/action_chunk, ~/status."""
    out = {settings.command_topic: "trajectory_msgs/msg/JointTrajectory",
           f"/{node_name}/action_chunk": ACTION_CHUNK, f"/{node_name}/status": STRING}
    if settings.gripper_command_topic:
        out[settings.gripper_command_topic] = "std_msgs/msg/Float64"
    return out


def add_replay_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-eval replay`."""
    p = sub.add_parser("replay", help="play a bag into live topics and record a running node's outputs",
                       description="Publish a bag's messages at their recorded timing (scaled by --rate) and record "
                                   "what the running policy node publishes (trajectory commands, gripper commands, "
                                   "~/action_chunk, ~/status) into a new bag. Uses ROS_DOMAIN_ID.")
    p.add_argument("bag", help="bag directory or .db3/.mcap file to play")
    p.add_argument("--record", required=True, help="bag directory to create")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed (default 1 = recorded timing)")
    p.add_argument("--params", help="the node's parameter file, for the output topic names")
    p.add_argument("--node-name", default=NODE_NAME, help="name of the node whose ~/ topics are recorded")
    p.add_argument("--topics", nargs="+", help="bag topics to play (default: all but the node's outputs)")
    p.add_argument("--record-topic", action="append", default=[], metavar="TOPIC:TYPE",
                   help="also record TOPIC of TYPE (e.g. /diagnostics:diagnostic_msgs/msg/DiagnosticArray)")
    p.add_argument("--record-inputs", action="store_true", help="also record the played topics as they arrive")
    p.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"), help="storage of the new bag")
    p.add_argument("--wait-s", type=float, default=10.0, help="wait this long for subscribers before playing")
    p.add_argument("--linger-s", type=float, default=2.0, help="keep recording this long after the last message")
    p.add_argument("--min-subscribers", type=int, default=1,
                   help="subscribers each played topic waits for (0 = do not wait)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """Run the replay and print what went in and out."""
    from retain_ros.errors import ConfigError
    from retain_ros.evaluate.bag_reader import Bag
    from retain_ros.evaluate.live_replay import replay

    settings = InputSettings.from_file(args.params)
    record = node_outputs(settings, args.node_name)
    for item in args.record_topic:
        topic, sep, msgtype = item.partition(":")
        if not sep or msgtype.count("/") != 2:
            raise ConfigError(f"--record-topic expects TOPIC:pkg/msg/Type, got '{item}'")
        record[topic] = msgtype
    inputs = [*settings.camera_topics, settings.joint_states_topic, settings.gripper_states_topic,
              settings.instruction_topic]
    with Bag(args.bag) as bag:  # by default the node's outputs in the bag are not played: the live node makes them
        have = {t: m for t, (m, n) in bag.topics.items() if n}
    topics = args.topics or [t for t in have if t not in record]
    if args.record_inputs:
        record.update({t: have[t] for t in topics if t in have})
    # disable=None: no bar when stderr is not a terminal (logs, CI), instead of one line per update
    bar = tqdm(unit="msg", desc="retain-eval replay", disable=True if args.quiet else None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    result = replay(args.bag, args.record, record, rate=args.rate, topics=topics, wait_for=inputs,
                    storage=args.storage, wait_s=args.wait_s, linger_s=args.linger_s,
                    min_subscribers=args.min_subscribers, progress=progress)
    bar.close()
    print(f"played {sum(result.published.values())} messages of {result.bag_duration_s:.2f} s in "
          f"{result.duration_s:.2f} s (rate {args.rate}); recorded into {args.record}:")
    for topic, count in sorted(result.recorded.items()):
        print(f"  {topic}: {count}")
    if result.unmatched:
        print(f"no subscriber when playing started: {', '.join(result.unmatched)}")
    return 0
