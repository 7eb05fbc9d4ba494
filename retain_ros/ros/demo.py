"""`make demo`: the whole product end to end on a laptop with pip alone (issue 7).

1. starts the simulated robot (MuJoCo) and the policy node (embedded base + task-finetuned checkpoints, alpha 0.5) as
   separate processes in an isolated ROS environment (own domain id, Fast DDS profile, logs under the output folder);
2. runs episodes of the target task in `id`, in an OOD variation and of a generalist task, driven through the sim
   node's parameters and its `~/reset` / `~/success` services, while the live recorder writes every topic to a bag;
3. changes alpha live through the parameter service (as `ros2 param set` does), waits until `~/status` reports the
   new weights' fingerprint, and runs the same episodes again;
4. records held-out expert demonstrations of the OOD setting as bags (`retain-sim collect --bag`, seeds no model
   trained on) and scores every alpha on them with `retain-eval bag` (the expert's DROID actions as targets), so the
   offline ranking of alphas stands next to the closed-loop successes of steps 2-3;
5. prints one summary table and writes the plots, a PNG strip of an episode and summary.json into the output folder.
Every process it started is stopped at the end, also on Ctrl-C; the exit code is non-zero if any step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retain_ros.bag_types import ACTION_CHUNK
from retain_ros.errors import ConfigError
from retain_ros.paths import embedded_models_dir
from retain_ros.ros.processes import NodeProcess, Observer, next_domain_id, ros_env, wait_until  # (no rclpy import)
from retain_ros.topics import MSG_TYPES, Topics

MODELS = embedded_models_dir()
TARGET = "push_red_to_purple"
MARKER = "/retain_demo/episode_start"  # one message per episode: splits the bag for `retain-eval bag --episode-topic`
NODE_TOPICS = {"/retain_policy/action_chunk": ACTION_CHUNK, "/retain_policy/status": "std_msgs/msg/String",
               "/sim_robot/episode": "std_msgs/msg/String", MARKER: "std_msgs/msg/String"}
CAMERAS = (Topics().exterior_image, Topics().wrist_image)


@dataclass
class Plan:
    """What one run does; `--quick` is the CI form (shorter episodes, fewer replay alphas, sparser replay)."""

    settings: list[tuple[str, str]]
    live_alphas: tuple[float, float] = (0.5, 0.9)
    replay_alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
    episodes: int = 1
    timeout_s: float | None = None  # simulated seconds per episode; None = the task's own step limit
    every: int = 2
    seed: int = 1000  # away from the training seeds, as `retain-eval sim`
    heldout_episodes: int = 3  # expert demos of the OOD setting recorded for the replay step
    heldout_seed: int = 3000  # away from the training and closed-loop seeds

    @property
    def ood_variation(self) -> str:
        """The OOD variation of the target task (the second setting)."""
        return self.settings[1][1]

    @classmethod
    def make(cls, quick: bool, episodes: int, timeout_s: float | None, variation: str) -> Plan:
        settings = [(TARGET, "id"), (TARGET, variation), ("pick_red", "id")]
        if quick:
            return cls(settings, replay_alphas=(0.0, 0.5, 1.0), episodes=episodes, timeout_s=timeout_s or 3.0,
                       every=5, heldout_episodes=1)
        return cls(settings, episodes=episodes, timeout_s=timeout_s)

    def limit_s(self, task: str) -> float:
        """Episode timeout in simulated seconds: the task's own limit (as `retain-eval sim`) unless one was given."""
        if self.timeout_s:
            return self.timeout_s
        from retain_ros.sim import task_suite  # noqa: F401  (registers the tasks)
        from retain_ros.sim.tasks import SUITE

        return SUITE.get(task).max_steps / 15.0


@dataclass
class Outcome:
    """What the run measured (summary.json is this as a dict), kept so that a failed run still reports its part."""

    out: str
    steps: dict[str, str] = field(default_factory=dict)
    episodes: list[dict] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)
    reload_s: float | None = None
    status_after_s: float | None = None
    replay: dict[str, dict] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


class StepFailed(Exception):
    """A demo step failed; the message names the step, what happened and the fix."""


def say(text: str) -> None:
    print(text, flush=True)  # flushed: `make demo | tee` shows progress as it happens


def step(outcome: Outcome, number: int, title: str) -> None:
    outcome.steps[f"{number}"] = "running"
    say(f"\n=== step {number}/5: {title} ===")


class LiveSession:
    """The ROS side of steps 1-3: two node processes, a client node in this process and the bag recorder."""

    def __init__(self, out: Path, plan: Plan) -> None:
        self.out, self.plan = out, plan
        self.nodes: dict = {}
        self.observer = self.recorder = self.marker_pub = None

    def start(self) -> None:
        """Isolated environment first (this process's participant reads it once), then recorder, then the nodes."""
        domain = next_domain_id()
        env = ros_env(self.out / "ros", domain)
        for key in ("FASTRTPS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR"):
            os.environ[key] = env[key]
        say(f"ROS_DOMAIN_ID={domain}, node logs in {self.out / 'logs'}")
        self.observer = Observer(domain, "retain_demo")
        self._start_recorder()
        (self.out / "logs").mkdir(exist_ok=True)
        sim_args = ["--ros-args", "-p", f"task:={TARGET}", "-p", "image_size:=64", "-p", f"seed:={self.plan.seed}"]
        self.nodes["sim_robot"] = NodeProcess("retain_ros.ros.sim_robot_node", sim_args, env,
                                              self.out / "logs" / "sim_robot.log")
        self.nodes["retain_policy"] = NodeProcess("retain_ros.ros.policy_node", self._policy_args(), env,
                                                  self.out / "logs" / "retain_policy.log")
        say("started sim_robot_node and policy_node; waiting for the model and the first commands ...")
        status = self._wait_status(lambda s: s.get("fingerprint") and s.get("chunks", 0) > 0, 180,
                                   "the policy node to load the model and command the simulated arm")
        say(f"policy serving alpha {status['alpha']} (fingerprint {status['fingerprint'][:12]}), "
            f"{status['chunks']} chunks sent")

    def _policy_args(self) -> list[str]:
        from retain_ros.evaluate.observations import DEFAULT_PARAMS
        from retain_ros.ros.policy_params import SIM_OVERRIDES

        params = {**SIM_OVERRIDES, "checkpoint_root": MODELS, "base_checkpoint": MODELS / "base",
                  "finetuned_checkpoints": f"['{MODELS / 'task_ft'}']", "alpha": self.plan.live_alphas[0],
                  "image_max_age_s": 1.0, "joint_states_max_age_s": 1.0, "gripper_max_age_s": 1.0}
        args = ["--ros-args", "--params-file", str(DEFAULT_PARAMS)]
        for name, value in params.items():
            args += ["-p", f"{name}:={value}"]
        return args

    def _start_recorder(self) -> None:
        """Every topic of both nodes into one bag; cameras are best-effort, so they get sensor-data subscriptions."""
        from rclpy.qos import QoSDurabilityPolicy, QoSProfile
        from std_msgs.msg import String

        from retain_ros.evaluate.live_replay import Recorder

        topics = {getattr(Topics(), k): t for k, t in MSG_TYPES.items() if k != "droid_action"} | NODE_TOPICS
        node = self.observer.node
        self.recorder = Recorder(node, self.out / "bag", topics, "sqlite3", {Topics().instruction},
                                 best_effort=set(CAMERAS))
        self.marker_pub = node.create_publisher(String, MARKER, QoSProfile(depth=10))
        self.observer.collect(String, "/retain_policy/status",
                              QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL))
        wait_until(lambda: self.marker_pub.get_subscription_count() > 0, 10, "the recorder to hear the markers")

    def status(self) -> dict:
        messages = self.observer.received("/retain_policy/status")
        return json.loads(messages[-1].data) if messages else {}

    def _wait_status(self, predicate, timeout_s: float, what: str) -> dict:
        def check():
            for name, proc in self.nodes.items():
                if not proc.alive():
                    raise StepFailed(f"{name} exited ({proc.proc.returncode}) while waiting for {what}; its log: "
                                     f"{proc.log_path}\n{proc.output()[-3000:]}")
            status = self.status()
            return status if status and predicate(status) else None
        return wait_until(check, timeout_s, what, poll_s=0.2)

    def run_episode(self, task: str, variation: str, seed: int, alpha: float) -> dict:
        """Pause the policy, mark the episode in the bag, reset, resume, poll `~/success` until success or timeout.

        The policy resumes only once the episode's instruction is in the bag, so it never acts on the previous one.
        """
        from std_msgs.msg import String

        obs = self.observer
        obs.call_trigger("/retain_policy/pause")
        self._set("sim_robot", {"task": task, "variation": variation, "seed": seed})
        instructions = self.recorder.counts[Topics().instruction]
        self.marker_pub.publish(String(data=json.dumps({"task": task, "variation": variation, "seed": seed,
                                                        "alpha": alpha})))
        reset = obs.call_trigger("/sim_robot/reset")
        if not reset.success:
            raise StepFailed(f"sim_robot ~/reset failed: {reset.message}")
        wait_until(lambda: self.recorder.counts[Topics().instruction] > instructions, 20, "the new instruction")
        obs.call_trigger("/retain_policy/resume")
        started, limit_s = time.monotonic(), self.plan.limit_s(task)
        while True:
            time.sleep(0.5)
            answer = obs.call_trigger("/sim_robot/success")
            episode = json.loads(answer.message)
            wall = time.monotonic() - started
            # the episode timeout counts simulated time; the wall-clock cap only guards against a stalled simulator
            if answer.success or episode["sim_time_s"] >= limit_s or wall > 6 * limit_s + 30:
                break
        obs.call_trigger("/retain_policy/pause")
        return {**episode, "alpha": alpha, "wall_s": round(wall, 2)}

    def _set(self, node: str, params: dict) -> None:
        results = self.observer.set_parameters(node, params)
        if not all(r.successful for r in results):
            raise StepFailed(f"{node} refused {params}: {'; '.join(r.reason for r in results if r.reason)}")

    def change_alpha(self, alpha: float) -> tuple[dict, float]:
        """`ros2 param set /retain_policy alpha A`, then wait for ~/status to serve the new fingerprint."""
        before = self.status()["fingerprint"]
        started = time.monotonic()
        self._set("retain_policy", {"alpha": float(alpha)})
        status = self._wait_status(lambda s: s.get("alpha") == alpha and s["fingerprint"] != before, 60,
                                   f"~/status to report the alpha {alpha} model")
        return status, time.monotonic() - started

    def close(self) -> None:
        """Stop recording (the bag is finished here), then the client node, then the node processes.

        Every part is stopped even when an earlier one raises; the first error is raised at the end.
        """
        errors: list[BaseException] = []

        def attempt(action) -> None:
            try:
                action()
            except Exception as exc:  # noqa: BLE001  (keep stopping the rest; re-raised below)
                errors.append(exc)
                say(f"clean-up: {exc}")

        recorder, observer, nodes = self.recorder, self.observer, self.nodes
        self.recorder, self.observer, self.nodes = None, None, {}
        if recorder is not None:
            for sub in recorder.subscriptions.values():
                attempt(lambda sub=sub: observer.node.destroy_subscription(sub))
            attempt(recorder.close)
        if observer is not None:
            attempt(observer.close)
        for name, proc in nodes.items():
            attempt(lambda name=name, proc=proc: say(f"stopped {name} (exit code {proc.stop(timeout_s=10.0)})"))
        if errors:
            raise errors[0]


def run_live(session: LiveSession, plan: Plan, outcome: Outcome) -> None:
    """Steps 1-3."""
    step(outcome, 1, f"start sim_robot_node + policy_node (embedded base + task-FT, alpha {plan.live_alphas[0]})")
    session.start()
    outcome.fingerprints[str(plan.live_alphas[0])] = session.status()["fingerprint"]
    outcome.steps["1"] = "ok"
    step(outcome, 2, f"episodes at alpha {plan.live_alphas[0]}, recorded to {session.out / 'bag'}")
    run_episodes(session, plan, plan.live_alphas[0], outcome)
    outcome.steps["2"] = "ok"
    step(outcome, 3, f"live alpha change {plan.live_alphas[0]} -> {plan.live_alphas[1]} (parameter service), "
                     "same episodes again")
    status, waited = session.change_alpha(plan.live_alphas[1])
    outcome.fingerprints[str(plan.live_alphas[1])] = status["fingerprint"]
    outcome.reload_s, outcome.status_after_s = status["reload_s"], waited
    say(f"~/status: fingerprint {status['fingerprint'][:12]} after {waited:.2f} s (node re-merge + swap "
        f"{status['reload_s']:.3f} s)")
    run_episodes(session, plan, plan.live_alphas[1], outcome)
    outcome.steps["3"] = "ok"


def run_episodes(session: LiveSession, plan: Plan, alpha: float, outcome: Outcome) -> None:
    total = len(plan.settings) * plan.episodes
    for i, (task, variation) in enumerate(plan.settings):
        for k in range(plan.episodes):
            n = i * plan.episodes + k + 1
            episode = session.run_episode(task, variation, plan.seed + k, alpha)
            outcome.episodes.append(episode)
            say(f"  [{n}/{total}] alpha {alpha} {task}/{variation} seed {plan.seed + k}: "
                f"{'success' if episode['success'] else 'no success'} (reward {episode['reward']:.2f}, "
                f"{episode['sim_time_s']:.1f} s simulated, {episode['wall_s']:.1f} s wall)")


def record_heldout(out: Path, plan: Plan) -> list[Path]:
    """Expert demonstrations of the target task in the OOD setting, one rosbag2 each (as `retain-sim collect --bag`)."""
    from retain_ros.sim.collect import CollectConfig, collect

    cfg = CollectConfig(tasks=(TARGET,), variation=plan.ood_variation, episodes=plan.heldout_episodes,
                        out_dir=out / "heldout", seed=plan.heldout_seed, workers=1, bag=True, image_size=64)
    collect(cfg, progress=False)
    return sorted(p for p in (out / "heldout" / "bags").iterdir() if p.is_dir())


def run_replay(out: Path, plan: Plan, outcome: Outcome) -> None:
    """Step 4: held-out OOD expert bags, scored at every alpha by `retain-eval bag` (in-process) against the expert."""
    import torch

    from retain_ros.evaluate.bag_eval import BagEvalConfig, evaluate_bags

    heldout = out / "heldout" / "bags"
    step(outcome, 4, f"retain-sim collect --tasks {TARGET} --variation {plan.ood_variation} --episodes "
                     f"{plan.heldout_episodes} --seed {plan.heldout_seed} --bag; retain-eval bag {heldout}/* --alpha "
                     f"{','.join(str(a) for a in plan.replay_alphas)} --target action")
    torch.set_num_threads(1)
    bags = record_heldout(out, plan)
    say(f"recorded {len(bags)} held-out expert bag(s) of {TARGET}/{plan.ood_variation} in {heldout}")
    cfg = BagEvalConfig(bags=bags, base=MODELS / "base", finetuned=[MODELS / "task_ft"], alphas=plan.replay_alphas,
                        out=out / "replay", target="action", every=plan.every, resamples=200)
    _, paths = evaluate_bags(cfg)
    report = json.loads(Path(paths["json"]).read_text())
    for label in report["labels"]:
        agg = report["aggregate"][label]
        outcome.replay[label] = {k: agg.get(k) for k in ("mse", "mae", "gripper_accuracy", "observations")}
    outcome.files.update({k: str(v) for k, v in paths.items()})
    outcome.steps["4"] = "ok"


def write_strip(out: Path, outcome: Outcome, frames: int = 8) -> Path:
    """Step 5's picture: the first recorded episode as the cameras saw it, laid out like `retain-sim render`."""
    from PIL import Image, ImageDraw
    from rosbags.highlevel import AnyReader

    from retain_ros.sim.strip import frame_indices, save_strip

    images: dict[str, list] = {t: [] for t in CAMERAS}
    marks: list[int] = []
    with AnyReader([out / "bag"]) as reader:
        for conn, log_ns, raw in reader.messages([c for c in reader.connections if c.topic in (*CAMERAS, MARKER)]):
            if conn.topic == MARKER:
                marks.append(log_ns)
            elif len(marks) == 1:
                msg = reader.deserialize(raw, conn.msgtype)
                images[conn.topic].append(np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, -1)[..., :3])
    if not all(images.values()):
        raise StepFailed("no camera images of the first episode in the bag; see logs/sim_robot.log")
    first, size = outcome.episodes[0], images[CAMERAS[0]][0].shape[0]
    strip = Image.new("RGB", (200 + frames * (size + 2), 2 * (size + 2)), "white")
    draw = ImageDraw.Draw(strip)
    for row, (topic, shots) in enumerate(images.items()):
        for i, k in enumerate(frame_indices(len(shots), frames)):
            strip.paste(Image.fromarray(shots[k]), (200 + i * (size + 2), row * (size + 2)))
        draw.multiline_text((4, 4 + row * (size + 2)), f"{first['task']}\n{first['variation']}, alpha {first['alpha']}"
                            f"\n{topic.split('/')[2]}: {'success' if first['success'] else 'no success'}", fill="black")
    return save_strip(strip, out / "episode_strip.png")


def summary_text(outcome: Outcome, plan: Plan) -> str:
    """The one-screen summary: success per setting and alpha, reload time, replay error per alpha, steps."""
    alphas = plan.live_alphas
    header = "".join(f"{'alpha ' + str(a):>12}" for a in alphas)
    lines = ["", "summary", f"  {'setting (live, in the simulator)':<42}{header}"]
    for task, variation in plan.settings:
        cells = []
        for a in alphas:
            eps = [e for e in outcome.episodes if (e["task"], e["variation"], e["alpha"]) == (task, variation, a)]
            cells.append(f"{sum(e['success'] for e in eps)}/{len(eps)}" if eps else "-")
        label = f"{task} / {variation} ({'target' if task == TARGET else 'generalist'})"
        lines.append(f"  {label:<42}" + "".join(f"{c:>12}" for c in cells))
    if outcome.reload_s is not None:
        lines.append(f"  live alpha change {alphas[0]} -> {alphas[1]}: re-merge + swap {outcome.reload_s:.3f} s, "
                     f"~/status showed the new fingerprint after {outcome.status_after_s:.2f} s")
        lines.append("  fingerprints: " + ", ".join(f"alpha {a}: {f[:12]}" for a, f in outcome.fingerprints.items()))
    if outcome.replay:
        lines += ["", f"  offline: error against held-out expert demos of {TARGET} / {plan.ood_variation} "
                      "(DROID actions)",
                  f"  {'replay alpha':<14}{'MSE':>14}{'MAE':>12}{'gripper acc':>13}{'obs':>7}"]
        for label, r in outcome.replay.items():
            fmt = [("n/a" if r[k] is None else f"{r[k]:.4f}") for k in ("mse", "mae", "gripper_accuracy")]
            lines.append(f"  {label:<14}{fmt[0]:>14}{fmt[1]:>12}{fmt[2]:>13}{r['observations']:>7}")
    lines += ["", "  steps: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.steps.items()))]
    lines += [f"  {name}: {path}" for name, path in outcome.files.items()]
    return "\n".join(lines)


def run(out: Path, plan: Plan, outcome: Outcome) -> None:
    """All five steps; the live session is closed (bag finished, nodes stopped) before the replay needs the CPU."""
    session = LiveSession(out, plan)
    try:
        run_live(session, plan, outcome)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish; it kills what hangs
        try:
            session.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    outcome.files["bag"] = str(out / "bag")  # finished: the recorder was closed with the session
    run_replay(out, plan, outcome)
    step(outcome, 5, "summary, plots and an episode strip")
    outcome.files["strip"] = str(write_strip(out, outcome))
    outcome.steps["5"] = "ok"


FIXES = {"1": "check that `make venv` finished (rclpy from PyPI) and read logs/*.log in the output folder",
         "2": "read logs/*.log in the output folder; on a very busy machine try --quick",
         "3": "read logs/retain_policy.log (the live re-merge logs its error there)",
         "4": "re-run the collection and `retain-eval bag` with the arguments printed above",
         "5": "check that the output folder is writable"}


OUT_MARKER = ".retain_demo_output"  # written into every folder the demo makes; only such a folder is ever replaced


def prepare_out(out: Path) -> None:
    """Make an empty output folder: replace one an earlier demo made, refuse any other non-empty folder.

    Raises:
        ConfigError: `out` is a file, or a non-empty folder the demo did not make (it is never deleted).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the demo's output")
    if out.is_dir() and any(out.iterdir()):
        if not (out / OUT_MARKER).is_file():
            raise ConfigError(f"--out {out} is a non-empty folder the demo did not make; nothing was deleted. Pass a "
                              "new or empty folder (the default is demo_out)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUT_MARKER).write_text("made by python -m retain_ros.ros.demo; the next run replaces this folder\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retain_ros.ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out",
                        help="output folder (an earlier demo's output is replaced; any other non-empty folder is "
                             "refused)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes per setting and alpha (default 1)")
    parser.add_argument("--quick", action="store_true", help="the reduced CI form: 3 s episodes, 3 replay alphas")
    parser.add_argument("--variation", default="viewpoint",
                        help="the OOD variation of the target task (default viewpoint: where merges differ most in "
                             "retain-eval sim)")
    parser.add_argument("--episode-timeout", type=float, help="simulated seconds per episode (default: the task's "
                        "own limit, 7-16 s; quick: 3)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    try:
        prepare_out(out)
    except ConfigError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    plan = Plan.make(args.quick, max(1, args.episodes), args.episode_timeout, args.variation)
    outcome = Outcome(out=str(out))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up like Ctrl-C
    started, code = time.perf_counter(), 0
    say(f"retain_ros demo: output folder {out}")
    try:
        run(out, plan, outcome)
    except KeyboardInterrupt:
        code = 130
        outcome.steps.update({k: "interrupted" for k, v in outcome.steps.items() if v == "running"})
        say("\ninterrupted: every process the demo started has been stopped")
    except (StepFailed, ConfigError, AssertionError, OSError, RuntimeError) as exc:
        code = 1
        failed = next((k for k, v in outcome.steps.items() if v == "running"), "?")
        outcome.steps[failed] = "FAILED"
        say(f"\ndemo step {failed} failed: {exc}\nfix: {FIXES.get(failed, 'see the message above')}")
    outcome.steps.update({k: "FAILED" for k, v in outcome.steps.items() if v == "running"})
    (out / "summary.json").write_text(json.dumps(outcome.__dict__, indent=2, default=str))
    text = summary_text(outcome, plan) + f"\n  total {time.perf_counter() - started:.0f} s; output folder: {out}"
    (out / "summary.txt").write_text(text + "\n")
    say(text)
    return code or (0 if len(outcome.steps) == 5 and all(v == "ok" for v in outcome.steps.values()) else 1)


if __name__ == "__main__":
    sys.exit(main())
