"""`retain-serve`: a RETAIN-merged policy behind openpi's websocket protocol, for the two-machine layout.

The GPU host runs `retain-serve`; the robot PC runs the node with `policy_backend: openpi_server` (or any openpi DROID
client). Alpha changes arrive from the node (`ros2 param set /retain_policy alpha 0.7`) and are merged into the
server's standby copy, then served from the next request on.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from retain_ros.cli_errors import run_reporting_errors
from retain_ros.errors import ConfigError
from retain_ros.merge.cli import parse_alpha

EPILOG = """examples:
  # the embedded reference VLA, base + task-FT at alpha 0.9, on port 8000 of every interface
  retain-serve --checkpoint-root retain_ros/models --base base --finetuned task_ft --alpha 0.9
  # a LeRobot pi0 pair on a GPU, only the language backbone merged at 0.5
  retain-serve --checkpoint-root /data/ckpt --base pi0_base --finetuned pi0_ft --alpha 1 \\
      --group-alpha language=0.5 --device cuda
then, on the robot PC: policy_backend: openpi_server, policy_server_uri: ws://GPU_HOST:8000 (docs/robot.md).
An openpi DROID client connects the same way (openpi-client's WebsocketClientPolicy(host, port)).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="retain-serve", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a RETAIN merge over openpi's websocket policy protocol (DROID requests in, H x 8 action "
                    "chunks out), with live alpha changes merged into a standby copy between two requests.")
    p.add_argument("--checkpoint-root", default="", help="directory the checkpoint names are taken in (and loads "
                                                         "are confined to)")
    p.add_argument("--base", required=True, help="pretrained checkpoint (a name inside --checkpoint-root, or a path)")
    p.add_argument("--finetuned", nargs="*", default=[], help="finetuned checkpoint(s); several = sequential skills; "
                                                              "none serves the base alone")
    p.add_argument("--alpha", default="0.5", help="alpha of every group: one value, or one per finetuned checkpoint")
    p.add_argument("--group-alpha", action="append", default=[], metavar="GROUP=A",
                   help="a group's own alpha (vision, language, action), repeatable")
    p.add_argument("--groups", default="auto", help="parameter-group preset name or YAML (default: detected)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (openpi's default 8000; 0 = any free port)")
    p.add_argument("--device", default="cpu", help="torch device of the policy and the merge (cpu, cuda)")
    p.add_argument("--swap-mode", default="auto", choices=("auto", "standby", "in_place"),
                   help="standby: a second copy, answers never wait for a merge; in_place: one copy, requests wait "
                        "while it is merged; auto: standby where it fits")
    p.add_argument("--dtype", default="", choices=("", "bfloat16", "float32"),
                   help="LeRobot pi0 / pi0.5 weight precision ('' = the checkpoint's)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of the policy")
    p.add_argument("--lerobot-images", nargs="+", metavar="CAMERA=FEATURE",
                   help="LeRobot checkpoints: which image feature each DROID camera (exterior, wrist) feeds (default: "
                        "pi0 / pi0.5 DROID's base_0_rgb and left_wrist_0_rgb); as the node's lerobot_images")
    p.add_argument("--lerobot-state", nargs="+",
                   help="LeRobot: observation.state components in order (default: joint_positions gripper_position)")
    p.add_argument("--lerobot-action", help="LeRobot: what the first 7 outputs are (default: droid_joint_velocity)")
    p.add_argument("--lerobot-gripper", help="LeRobot: gripper output convention (default: closed_is_1)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every connection and alpha change")
    return p


def group_alphas(items: list[str]) -> dict[str, float | tuple[float, ...]]:
    """Parse `GROUP=A` items (A may hold one alpha per finetuned checkpoint, comma-separated).

    Raises:
        ConfigError: an item without '=' or a value that is not a number.
    """
    out: dict[str, float | tuple[float, ...]] = {}
    for item in items:
        group, sep, value = item.partition("=")
        if not sep or not group:
            raise ConfigError(f"--group-alpha '{item}' must be GROUP=ALPHA, e.g. language=0.5")
        values = parse_alpha(value, f"--group-alpha {group}")
        out[group] = values[0] if len(values) == 1 else values
    return out


def run(args: argparse.Namespace) -> int:
    """Load, merge and serve until Ctrl-C or SIGTERM."""
    import torch

    from retain_ros.paths import resolve_checkpoint
    from retain_ros.policy.lerobot_io import DROID_FR3_IO, LeRobotIO
    from retain_ros.serving.model_manager import ModelManager
    from retain_ros.serving.policy_server import PolicyServer
    from retain_ros.serving.recipes import MergeRequest

    if args.device == "cpu":
        torch.set_num_threads(1)
    alpha = parse_alpha(args.alpha, "--alpha")
    base = resolve_checkpoint(args.base, args.checkpoint_root)
    finetuned = tuple(resolve_checkpoint(f, args.checkpoint_root) for f in args.finetuned)
    recipe = MergeRequest(base, finetuned, alpha[0] if len(alpha) == 1 else alpha, group_alphas(args.group_alpha),
                          args.groups)
    defaults = DROID_FR3_IO.to_params()
    io_mapping = LeRobotIO.from_params(args.lerobot_images or defaults["images"], args.lerobot_state or
                                       defaults["state"], args.lerobot_action or defaults["action"],
                                       args.lerobot_gripper or defaults["gripper"])
    manager = ModelManager(args.device, args.seed, io_mapping, dtype=args.dtype, swap_mode=args.swap_mode)
    model = manager.load_initial(recipe)
    server = PolicyServer(manager, recipe, args.host, args.port)
    spec = model.policy.spec
    print(f"retain-serve: {type(model.policy).__name__} ({', '.join(spec.camera_names)} cameras, {spec.horizon} "
          f"actions per chunk), alphas {recipe.describe() if finetuned else '(base alone)'}, weights "
          f"{model.weights_id[:12]}", flush=True)
    print(f"retain-serve: listening on ws://{args.host}:{server.port} (Ctrl-C stops)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    finally:
        server.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `retain-serve`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="retain-serve: %(message)s")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with SIGINT ignored
    return run_reporting_errors("retain-serve", lambda: run(args), "stopped")


if __name__ == "__main__":
    sys.exit(main())
