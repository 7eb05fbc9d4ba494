"""The ROS side of the demo's steps 1-3.

The simulated robot and the policy node as processes, a client node in this process, the bag recorder, episodes
driven through the nodes' parameters and services, and the live alpha change.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from retain_ros.demo.plan import CAMERAS, MARKER, MODELS, NODE_TOPICS, TARGET, Plan, StepFailed, say
from retain_ros.ros.processes import NodeProcess, Observer, next_domain_id, ros_env, wait_until
from retain_ros.topics import MSG_TYPES, Topics


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
        status = self._wait_status(lambda s: s.get("weights_id") and s.get("chunks", 0) > 0, 180,
                                   "the policy node to load the model and command the simulated arm")
        say(f"policy serving alpha {status['alpha']} (weights {status['weights_id'][:12]}), "
            f"{status['chunks']} chunks sent")

    def _policy_args(self) -> list[str]:
        from retain_ros.control.params import SIM_OVERRIDES
        from retain_ros.paths import config_dir

        params = {**SIM_OVERRIDES, "checkpoint_root": MODELS, "base_checkpoint": MODELS / "base",
                  "finetuned_checkpoints": f"['{MODELS / 'task_ft'}']", "alpha": self.plan.live_alphas[0],
                  "image_max_age_s": 1.0, "joint_states_max_age_s": 1.0, "gripper_max_age_s": 1.0}
        args = ["--ros-args", "--params-file", str(config_dir() / "fr3_droid.yaml")]
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

    def run_episode(self, task: str, variation: str, seed: int, alpha: float | str) -> dict:
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
        serving = self.status()  # what served the episode: its recipe and how it came to serve
        obs.call_trigger("/retain_policy/pause")
        recipe = {k: serving.get(k) for k in ("route", "recipe", "weights_id", "cached", "swap_s", "reload_s")}
        return {**episode, "alpha": alpha, "wall_s": round(wall, 2), "serving": recipe}

    def _set(self, node: str, params: dict) -> None:
        results = self.observer.set_parameters(node, params)
        if not all(r.successful for r in results):
            raise StepFailed(f"{node} refused {params}: {'; '.join(r.reason for r in results if r.reason)}")

    def change_alpha(self, alpha: float) -> tuple[dict, float]:
        """`ros2 param set /retain_policy alpha A`, then wait for ~/status to serve the new weights."""
        before = self.status()["weights_id"]
        started = time.monotonic()
        self._set("retain_policy", {"alpha": float(alpha)})
        status = self._wait_status(lambda s: s.get("alpha") == alpha and s["weights_id"] != before, 60,
                                   f"~/status to report the alpha {alpha} model")
        return status, time.monotonic() - started

    def set_steering(self, mode: str, checkpoint: Path | None = None) -> dict:
        """`ros2 param set /retain_policy steering value` (with its checkpoint), then wait until it is loaded.

        The node takes the new setting at its next chunk (the policy is paused between episodes), so what ~/status
        reports here is the wanted setting, loaded and ready.
        """
        params = {"steering_checkpoint": str(checkpoint)} if checkpoint else {}
        self._set("retain_policy", {**params, "steering": mode})

        def ready(status: dict) -> bool:
            steering = status.get("steering", {})
            if steering.get("last_error"):
                raise StepFailed(f"steering {mode}: {steering['last_error']}")
            return steering.get("wanted", "").split(" ")[0] == mode and not steering.get("loading", True)
        return self._wait_status(ready, 60, f"the node to load steering {mode}")

    def set_instruction_alphas(self, items: list[str]) -> None:
        """`ros2 param set /retain_policy instruction_alphas "[...]"`: each instruction at its own recipe."""
        self._set("retain_policy", {"instruction_alphas": list(items)})

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
