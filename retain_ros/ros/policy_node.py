"""`policy_node` (node name `retain_policy`): a RETAIN-merged policy driving a Franka through its trajectory controller.

A thin shell: it declares parameters (`policy_params.py`), hands each message to `NodeInputs` (the conversion,
stream buffers and observation assembly that offline evaluation runs too), and delegates the control thread to
`ControlLoop`, chunk execution to `ChunkExecutor`, live re-merging to `ModelManager`, gripper goals to
`GripperCommander` and the controller check to `controller_state`. Threads: the
executor thread runs subscriptions, services, parameter callbacks, action and service responses and the timers; the
control thread runs inference and publishes commands; the merge worker builds new models.

Outputs: JointTrajectory on `command_topic`; the gripper as franka_gripper move / grasp goals (`gripper_node`) or a
width (std_msgs/Float64) on `gripper_command_topic`; `~/action_chunk` (retain_ros_msgs/ActionChunk: the raw chunk with
its observation stamp, weights identity and alphas), `~/status` (std_msgs/String, JSON) and `/diagnostics`.
Services `~/reload`, `~/pause`, `~/resume` (std_srvs/Trigger). With `start_paused` (the default) nothing is commanded
until `~/resume`; deactivate, shutdown and Ctrl-C send the stop trajectory for a motion still running.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, qos_profile_sensor_data
from retain_ros_msgs.msg import ActionChunk as ActionChunkMsg
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from retain_ros.control import params as pp
from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig, JointLimits, PlannedCommand
from retain_ros.control.inputs import GRIPPER, JOINTS, InputSettings, NodeInputs
from retain_ros.control.workspace import Workspace
from retain_ros.errors import ConfigError
from retain_ros.gripper import gripper_width
from retain_ros.paths import resolve_checkpoint
from retain_ros.policy.interface import can_sample
from retain_ros.policy.lerobot_io import LeRobotIO
from retain_ros.ros import conversions as conv
from retain_ros.control.control_loop import ControlLoop, Executed
from retain_ros.control.controller_state import UNKNOWN, ControllerStatus, status_from_list
from retain_ros.control.gripper_commands import GripperCommander, GripperSettings, fill
from retain_ros.ros.lifecycle import ManagedNode, spin_managed
from retain_ros.serving.model_manager import ModelManager
from retain_ros.serving.remote import RemoteModelManager
from retain_ros.serving.recipes import MergeRequest, RecipeBook, parse_rules
from retain_ros.steering.manager import SteeringManager, SteeringSetting
from retain_ros.ros.policy_params import declare
from retain_ros.ros.status import diagnostics_message, status_dict

NODE_NAME = "retain_policy"

try:  # the franka_gripper backend exists only where franka_ros2 is installed (not on PyPI)
    from franka_msgs.action import Grasp as FrankaGrasp, Move as FrankaMove
except ImportError:  # pragma: no cover - depends on the robot PC
    FrankaGrasp = FrankaMove = None
try:  # controller_manager_msgs comes with ros2_control (a ROS install), not with PyPI
    from controller_manager_msgs.srv import ListControllers
except ImportError:  # pragma: no cover - depends on the robot PC
    ListControllers = None


class PolicyNode(ManagedNode):
    """The policy node; see the module docstring."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare(self)
        self.manager: ModelManager | RemoteModelManager | None = None
        self.steering: SteeringManager | None = None
        self.loop: ControlLoop | None = None
        self.inputs: NodeInputs | None = None
        self._entities: list = []
        self._gripper_clients: dict = {}
        self._gripper = GripperCommander()
        self._gripper_lock = threading.Lock()
        self._controllers_client = None
        self._controllers_call: tuple[float, object] | None = None  # (sent at, future) of the pending question
        self.controller = UNKNOWN
        self._reload_epoch = 0  # +1 per ~/reload: every request after it reads the files again once
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def p(self, name: str):
        """Current value of a parameter."""
        return self.get_parameter(name).value

    # ------------------------------------------------------------------------------------------- lifecycle
    @property
    def remote(self) -> bool:
        """Whether the model runs on a policy server (policy_backend openpi_server)."""
        return self.p("policy_backend") == "openpi_server"

    def _setup(self) -> None:
        for param in pp.PARAMS:  # values from a params file never pass the on-set callback
            if self.remote and param.name in pp.CHECKPOINT_PARAMS:
                continue  # the server's checkpoints
            reason = pp.check_change(param.name, self.p(param.name), self.p("checkpoint_root"))
            if reason is not None:
                raise ConfigError(reason)
        settings = InputSettings.from_params({p.name: self.p(p.name) for p in pp.PARAMS})  # checks camera_topics
        io_mapping = LeRobotIO.from_params(self.p("lerobot_images"), self.p("lerobot_state"), self.p("lerobot_action"),
                                           self.p("lerobot_gripper"), self.p("lerobot_rate_hz"))
        if self.remote:
            self.manager = RemoteModelManager(self.p("policy_server_uri"), self.p("policy_server_timeout_s"))
            self.get_logger().info(f"the model runs on the policy server at {self.p('policy_server_uri')}")
        else:
            self.manager = ModelManager(self.p("device"), self.p("seed"), io_mapping, self.p("content_hash"),
                                        int(self.p("recipe_cache_gb") * 1e9), self.p("lerobot_stats"),
                                        self.p("dtype"), self.p("swap_mode"))
            self.get_logger().info(f"loading {self.p('base_checkpoint')} + {self._finetuned()} ...")
        recipes = self._recipe_book()
        model = self.manager.load_initial(recipes.route(self.p("instruction")) if self.p("instruction")
                                          else recipes.default)
        self.inputs = NodeInputs(settings, tuple(model.policy.spec.camera_names))  # checks the policy's cameras
        self.get_logger().info(f"serving alphas {model.alphas}, weights {model.weights_id[:12]}")
        mode = self.p("execution_mode")
        if mode == "auto":
            mode = getattr(model.policy, "execution_mode", "chunk")
        spec = model.policy.spec
        if mode == "stream" and abs(1.0 / self.p("control_rate_hz") - spec.dt_s) > 0.05 * spec.dt_s:
            raise ConfigError(f"execution_mode stream sends one action per control period, but control_rate_hz is "
                              f"{self.p('control_rate_hz')} and the policy's actions are {1.0 / spec.dt_s:g} Hz apart; "
                              f"set control_rate_hz to {1.0 / spec.dt_s:g} (or use execution_mode chunk)")
        self._executor_config = self._executor_settings(mode)
        self.get_logger().info(f"execution mode {mode}, speed_scale {self.p('speed_scale')}")
        self._gripper = GripperCommander(GripperSettings(open_width_m=self.p("gripper_max_width_m"),
                                                         speed_m_s=self.p("gripper_speed_m_s"),
                                                         force_n=self.p("gripper_force_n")))
        self.steering = SteeringManager(spec, can_sample(model.policy), self.p("seed"), self._event)
        steering = self._steering_setting()
        self.steering.load_initial(steering)
        if steering.mode != "none":
            self.get_logger().info(f"steering {SteeringManager.describe(steering)}")
        self._create_interfaces()
        self.loop = ControlLoop(self.inputs, self.manager,
                                ChunkExecutor(self._executor_config), self._now_ns, self._publish,
                                1.0 / self.p("control_rate_hz"), lambda: self.p("instruction"), self._event,
                                send_stop=self._send_command, blocked=self._controller_blocks, recipes=recipes,
                                steering=self.steering, publish_gripper=self._publish_gripper)
        self.loop.episode_timeout_s = self.p("episode_timeout_s")
        self.manager.on_hold = self.loop.hold_for_merge
        if self.p("start_paused"):
            self.loop.pause("started paused (start_paused): call ~/resume to command the robot")
            resume = f"ros2 service call {self.get_fully_qualified_name()}/resume std_srvs/srv/Trigger"
            self.get_logger().warning(f"started paused (start_paused is true): nothing is commanded until `{resume}`")
        self.manager.start()
        # Everything loaded so far lives as long as the node: keep it out of the cyclic collector, whose full passes
        # over it held the GIL for ~50 ms and delayed the control thread by a period (measured while merging)
        gc.freeze()

    def _executor_settings(self, mode: str) -> ExecutorConfig:
        limits = JointLimits(tuple(self.p("position_min")), tuple(self.p("position_max")),
                             tuple(self.p("velocity_max")), tuple(self.p("acceleration_max")))
        if len(limits.q_min) != len(self.p("joint_names")):
            raise ConfigError(f"joint limits have {len(limits.q_min)} entries for {len(self.p('joint_names'))} "
                              "joint_names; give one per joint")
        workspace = Workspace(tuple(self.p("workspace_min")), tuple(self.p("workspace_max")),
                              self.p("table_height_m"))
        return ExecutorConfig(limits, self.p("execute_steps"), self.p("blend_weight"), self.p("max_start_jump_rad"),
                              speed_scale=self.p("speed_scale"), min_lead_time_s=self.p("min_lead_time_s"), mode=mode,
                              workspace=workspace)

    def _create_interfaces(self) -> None:
        image_type = CompressedImage if self.p("compressed_images") else Image
        topics = self.inputs.settings.camera_topic
        for cam in self.inputs.cameras:
            self._entities.append(self.create_subscription(
                image_type, topics[cam], lambda msg, cam=cam: self._on_image(cam, msg), qos_profile_sensor_data))
        self._entities.append(self.create_subscription(JointState, self.p("joint_states_topic"), self._on_joints,
                                                       qos_profile_sensor_data))
        if self.p("gripper_states_topic"):
            self._entities.append(self.create_subscription(JointState, self.p("gripper_states_topic"),
                                                           self._on_gripper, qos_profile_sensor_data))
        # Two subscriptions: a transient-local one receives a latched instruction published before the node started,
        # and a volatile one receives a plain `ros2 topic pub` (a transient-local subscription is incompatible with a
        # volatile publisher and would never hear it). A latched message arriving on both is the same text twice.
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        for qos in (latched, QoSProfile(depth=1)):
            self._entities.append(self.create_subscription(String, self.p("instruction_topic"), self._on_instruction,
                                                           qos))
        self.command_pub = self.create_publisher(JointTrajectory, self.p("command_topic"), 10)
        self.gripper_pub = None
        backend = self.p("gripper_backend")
        if backend == "topic":
            self.gripper_pub = self.create_publisher(Float64, self.p("gripper_command_topic"), 10)
        elif backend == "franka_gripper":
            if FrankaMove is None:
                raise ConfigError("gripper_backend 'franka_gripper' needs franka_msgs (installed with franka_ros2), "
                                  "which is not importable here; source the franka_ros2 workspace, or set "
                                  "gripper_backend to 'topic' (simulator) or 'none'")
            from rclpy.action import ActionClient

            node = self.p("gripper_node").rstrip("/")
            for state, kind in (("open", FrankaMove), ("closed", FrankaGrasp)):  # this franka_msgs has the fields
                try:
                    fill(kind.Goal(), self._gripper.goal(state).fields)
                except AttributeError as exc:
                    raise ConfigError(f"franka_msgs' {kind.__name__} goal differs from the one this node fills ({exc});"
                                      " use gripper_backend 'none' or a franka_ros2 release with move/grasp goals") \
                        from None
            self._gripper_clients = {name: (ActionClient(self, kind, f"{node}/{name}"), kind, f"{node}/{name}")
                                     for name, kind in (("move", FrankaMove), ("grasp", FrankaGrasp))}
            self._entities.append(self.create_timer(0.05, self._drain_gripper))
        if self.p("controller_manager") and ListControllers is not None:
            self._controllers_client = self.create_client(
                ListControllers, f"{self.p('controller_manager').rstrip('/')}/list_controllers")
            self._entities.append(self._controllers_client)
            self._entities.append(self.create_timer(1.0, self._ask_controller_manager))
        self.chunk_pub = self.create_publisher(ActionChunkMsg, "~/action_chunk", 10)
        self.status_pub = self.create_publisher(String, "~/status", latched)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._entities += [self.command_pub, self.chunk_pub, self.status_pub, self.diag_pub]
        self._entities += [self.create_service(Trigger, f"~/{n}", getattr(self, f"_srv_{n}"))
                           for n in ("reload", "pause", "resume", "home")]
        self._entities.append(self.create_timer(1.0 / self.p("status_rate_hz"), self._publish_status))

    def _activate(self) -> None:
        self.loop.start()

    def _deactivate(self) -> None:
        if self.loop is None:
            return
        if not self.loop.stop():
            self.get_logger().error("the control thread did not stop within 30 s (a hung inference?); activate will "
                                    "refuse to start a second one until it ends")
        try:
            with self._gripper_lock:
                self._gripper.hold()
            stop = self.loop.halt("inactive")
            if stop is not None:  # the arm was moving: bring it to rest instead of finishing a chunk
                self._send_command(stop)
                self.command_pub.wait_for_all_acked(Duration(seconds=1))
                self.get_logger().info(f"sent the stop trajectory ({stop.duration_s:.2f} s to rest)")
        finally:
            if self.p("start_paused"):  # activating again must not command until someone says so
                self.loop.pause("deactivated: call ~/resume after activating again")

    def _teardown(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        if self.manager is not None:  # after the loop: nothing else holds the models now
            self.manager.close()
            self.manager = None
        for entity in self._entities:
            self._destroy(entity)
        self._entities = []
        for client, _, _ in self._gripper_clients.values():
            client.destroy()
        self._gripper_clients = {}
        self._controllers_client = None

    def _destroy(self, entity) -> None:
        for kind in ("subscription", "publisher", "service", "timer", "client"):
            if type(entity).__name__.lower() == kind:
                getattr(self, f"destroy_{kind}")(entity)
                return

    # ------------------------------------------------------------------------------------------- inputs
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_image(self, cam: str, msg) -> None:
        self._report(cam, self.inputs.on_image(cam, msg, self._now_ns()))

    def _on_joints(self, msg: JointState) -> None:
        self._report(JOINTS, self.inputs.on_joints(msg, self._now_ns()))

    def _on_gripper(self, msg: JointState) -> None:
        self._report(GRIPPER, self.inputs.on_gripper(msg, self._now_ns()))

    def _on_instruction(self, msg: String) -> None:
        self.inputs.on_instruction(msg.data, self._now_ns())

    def _report(self, stream: str, problem: str | None) -> None:
        if problem is not None:  # the stream is marked bad until its next good message; ~/status names it
            self.get_logger().error(f"{stream}: {problem}", throttle_duration_sec=2.0)

    # ------------------------------------------------------------------------------------------- outputs
    def _publish(self, done: Executed) -> None:
        """Control thread: the command first (latency matters), then the raw chunk for recording."""
        self._send_command(done.plan)
        if done.new_chunk:
            self.chunk_pub.publish(conv.action_chunk_message(done, self._now_ns()))

    def _publish_gripper(self, position: float) -> None:
        """Control thread: the gripper position due now (each action's own, at its time within the command)."""
        if self.gripper_pub is not None:
            self.gripper_pub.publish(Float64(data=gripper_width(position, self.p("gripper_max_width_m"))))
        elif self._gripper_clients:  # sent by the executor thread (_drain_gripper), only while commanding
            with self._gripper_lock:
                self._gripper.want(position)

    def _drain_gripper(self) -> None:
        """Executor thread (timer): send the gripper goal the policy wants, only while the node commands.

        Goals go out from this thread only (rclpy's action client is not safe to call while another thread spins it).
        """
        now = time.monotonic()
        # ~/pause sets the loop's pause, then takes this lock: a goal is sent under it, so none after pause returns
        with self._gripper_lock:
            commanding = self.active and self.loop is not None and self.loop.commanding()
            if not commanding:
                self._gripper.hold()
                return
            goal = self._gripper.next_goal(now)
            if goal is None:
                return
            client, kind, name = self._gripper_clients[goal.action]
            if not client.server_is_ready():
                self._gripper.lost(now, f"gripper action {name} is not available")
                self.get_logger().warning(f"gripper action {name} is not available; is franka_gripper running "
                                          "(parameter gripper_node)?", throttle_duration_sec=5.0)
                return
            future = client.send_goal_async(fill(kind.Goal(), goal.fields))
        future.add_done_callback(self._on_gripper_goal_response)

    def _on_gripper_goal_response(self, future) -> None:
        try:
            handle = future.result()
            if handle is None or not handle.accepted:
                self._gripper_done(False, "franka_gripper refused the goal")
                return
            handle.get_result_async().add_done_callback(self._on_gripper_result)
        except Exception as exc:  # noqa: BLE001  (a broken answer must not take the executor down)
            self._gripper_done(False, f"gripper goal failed: {exc}")

    def _on_gripper_result(self, future) -> None:
        try:
            result = future.result().result
            self._gripper_done(bool(result.success), f"gripper goal failed: {result.error}")
        except Exception as exc:  # noqa: BLE001
            self._gripper_done(False, f"gripper goal failed: {exc}")

    def _gripper_done(self, succeeded: bool, why: str) -> None:
        with self._gripper_lock:
            self._gripper.finished(succeeded, time.monotonic(), why)
        if not succeeded:
            self.get_logger().warning(why, throttle_duration_sec=5.0)

    def _ask_controller_manager(self) -> None:
        """Timer: ask controller_manager whether controller_name is active (answered on the executor thread).

        One question at a time; an answer older than 3 s no longer counts (the status says so, commands are not held).
        """
        client, now = self._controllers_client, time.monotonic()
        if client is None:
            return
        if self._controllers_call is not None:
            asked_at, future = self._controllers_call
            if not future.done():
                if now - asked_at > 3.0:
                    self.controller = ControllerStatus(False, False, f"no answer from {client.srv_name} for "
                                                                     f"{now - asked_at:.0f} s")
                return
        if not client.service_is_ready():
            self.controller = ControllerStatus(False, False, f"{client.srv_name} is not available: cannot tell "
                                                             "whether the controller is active")
            return
        future = client.call_async(ListControllers.Request())
        future.add_done_callback(self._on_controllers)
        self._controllers_call = (now, future)

    def _on_controllers(self, future) -> None:
        try:
            status = status_from_list(future.result(), self.p("controller_name"))
        except Exception as exc:  # noqa: BLE001  (an unexpected answer must not take the executor down)
            status = ControllerStatus(False, False, f"unreadable answer from controller_manager: {exc}")
        if status.detail != self.controller.detail and status.blocks_commands:
            self.get_logger().warning(status.detail)
        self.controller = status

    def _controller_blocks(self) -> str | None:
        """Control thread: why commands would be dropped by the controller, if controller_manager says so."""
        return self.controller.detail if self.controller.blocks_commands else None

    def _send_command(self, plan: PlannedCommand) -> None:
        """Control thread: a chunk's command, or the stop when commanding stops mid-chunk (gripper unchanged)."""
        self.command_pub.publish(conv.trajectory(self.p("joint_names"), plan.times_s, plan.positions, plan.velocities))

    def _publish_status(self) -> None:
        if self.manager is None or self.loop is None:
            return
        status = status_dict(self.manager, self.loop, self.inputs.streams, self._now_ns(), self.active)
        status["controller"] = {"name": self.p("controller_name"), "known": self.controller.known,
                                "active": self.controller.active, "detail": self.controller.detail}
        status["gripper_problem"] = self._gripper.problem
        status["execution_mode"] = self.loop.executor.config.mode
        status["speed_scale"] = self.loop.executor.config.speed_scale
        if self.steering is not None:
            status["steering"] = self.steering.status()
        if self.remote:
            status["policy_server"] = self.manager.server_status()
        self.status_pub.publish(String(data=json.dumps(status)))
        self.diag_pub.publish(diagnostics_message(f"{self.get_name()}: policy", status, self.get_clock().now()))

    def _event(self, level: str, message: str) -> None:
        # one call site per severity: rclpy refuses a call site whose severity changes
        if level == "error":
            self.get_logger().error(message)
        elif level == "warn":
            self.get_logger().warning(message)
        else:
            self.get_logger().info(message)

    # ------------------------------------------------------------------------------------------- services
    def _srv_reload(self, request, response):
        if self.manager is None:
            response.success, response.message = False, "not configured"
            return response
        self._reload_epoch += 1
        recipes = self._recipe_book()
        request = self.loop.set_recipes(recipes) if self.loop is not None else None
        if request is None:
            self.manager.request(recipes.default)
        response.success = True
        response.message = "reload queued; ~/status reports the result"
        return response

    def _srv_pause(self, request, response):
        if self.loop is not None:
            self.loop.pause("paused by ~/pause: call ~/resume to command again")
            with self._gripper_lock:
                self._gripper.hold()
        response.success, response.message = self.loop is not None, "paused: no commands until ~/resume"
        return response

    def _srv_resume(self, request, response):
        if self.loop is not None:
            self.loop.resume()
        response.success, response.message = self.loop is not None, "resumed"
        return response

    def _srv_home(self, request, response):
        """Pause the policy and move slowly to home_position; ~/resume hands the arm back to the policy."""
        if self.loop is None:
            response.success, response.message = False, "not configured"
            return response
        try:
            plan = self.loop.go_home(np.asarray(self.p("home_position"), float), self.p("home_speed_scale"))
        except ConfigError as exc:
            response.success, response.message = False, f"not homing: {exc}"
            self.get_logger().warning(response.message)
            return response
        response.success = True
        response.message = f"homing: {plan.duration_s:.1f} s to home_position, then paused until ~/resume"
        return response

    # ------------------------------------------------------------------------------------------- parameters
    def _finetuned(self, value=None) -> tuple[str, ...]:
        value = self.p("finetuned_checkpoints") if value is None else value
        return tuple(v for v in value if v)

    def _recipe_book(self, overrides: dict | None = None) -> RecipeBook:
        """The default request (alpha parameters) and the instruction rules, from the parameters and `overrides`."""
        values = {p.name: self.p(p.name) for p in pp.PARAMS if p.name in pp.MERGE_PARAMS}
        values.update(overrides or {})
        root = self.p("checkpoint_root")
        if self.remote:  # the server holds the checkpoints; only alphas are asked for
            base, finetuned = "", ()
        else:
            base = resolve_checkpoint(values["base_checkpoint"], root)
            finetuned = tuple(resolve_checkpoint(f, root) for f in self._finetuned(values["finetuned_checkpoints"]))
        groups = {g: values[n] for n, g in pp.GROUP_ALPHAS.items() if values[n] >= 0.0}
        default = MergeRequest(base, finetuned, values["alpha"], groups, values["group_preset"],
                               layout=values["merge_layout"], epoch=self._reload_epoch)
        return RecipeBook(default, parse_rules(values["instruction_alphas"]))

    def _steering_setting(self, overrides: dict | None = None) -> SteeringSetting:
        """The steering the parameters (and `overrides`) ask for, with the checkpoint path resolved."""
        values = {name: self.p(name) for name in pp.STEERING_PARAMS}
        values.update(overrides or {})
        checkpoint = values["steering_checkpoint"]
        return SteeringSetting(values["steering"], values["steering_samples"],
                               resolve_checkpoint(checkpoint, self.p("checkpoint_root")) if checkpoint else "")

    def _on_set_parameters(self, params) -> SetParametersResult:
        groups = self.manager.groups if self.manager is not None else ()
        serving = self.manager.serving if self.manager is not None else None
        num_finetuned = len(serving.request.finetuned) if serving is not None else 0
        if any(p.name == "finetuned_checkpoints" for p in params):
            num_finetuned = 0  # the new list decides; the merge reports a mismatch
        for param in params:
            if self.remote and param.name in pp.CHECKPOINT_PARAMS:
                reason = (f"{param.name}: with policy_backend openpi_server the checkpoints are the server's "
                          "(retain-serve --base / --finetuned); only alphas change from the node")
                self.get_logger().warning(f"parameter change refused: {reason}")
                return SetParametersResult(successful=False, reason=reason)
            reason = pp.check_change(param.name, param.value, self.p("checkpoint_root"), groups, num_finetuned)
            if reason is not None:
                self.get_logger().warning(f"parameter change refused: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        steering_changes = {p.name: p.value for p in params if p.name in pp.STEERING_PARAMS}
        try:
            if steering_changes and self.steering is not None:
                setting = self._steering_setting(steering_changes)
                self.steering.check(setting)  # config only: the weights load off this thread
            self._apply_runtime_changes({p.name: p.value for p in params})
        except ConfigError as exc:  # e.g. an execution setting the executor refuses: nothing changed
            self.get_logger().warning(f"parameter change refused: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        if steering_changes and self.steering is not None:
            self.steering.request(setting)
            self.get_logger().info(f"steering requested: {SteeringManager.describe(setting)}")
        if "content_hash" in {p.name for p in params} and self.manager is not None:
            self.manager.set_content_hash(next(p.value for p in params if p.name == "content_hash"))
        merge_changes = {p.name: p.value for p in params if p.name in pp.MERGE_PARAMS}
        if merge_changes and self.loop is not None:
            self.loop.set_recipes(self._recipe_book(merge_changes))  # validated above: resolves cleanly
            self.get_logger().info(f"recipes changed: {merge_changes}")
        return SetParametersResult(successful=True)

    def _apply_runtime_changes(self, changes: dict) -> None:
        """Execution settings take effect at the control thread's next tick, all at once; stream ages at once.

        Raises:
            ConfigError: an execution setting the executor refuses (nothing changes).
        """
        if self.loop is None:
            return
        executor_fields = {name: name for name in ("execute_steps", "blend_weight", "max_start_jump_rad",
                                                   "speed_scale", "min_lead_time_s")}
        updates = {executor_fields[k]: v for k, v in changes.items() if k in executor_fields}
        if updates:
            self.loop.update_executor(**updates)
        if "episode_timeout_s" in changes:
            self.loop.episode_timeout_s = changes["episode_timeout_s"]
        ages = {"image_max_age_s": self.inputs.cameras, "joint_states_max_age_s": (JOINTS,),
                "gripper_max_age_s": (GRIPPER,)}
        max_age = self.inputs.streams.max_age_s
        for name, streams in ages.items():
            if name in changes:
                for stream in streams:
                    if stream in max_age:
                        max_age[stream] = changes[name]


def main(args: list[str] | None = None) -> int:
    """Run the policy node (`ros2 run retain_ros policy_node --ros-args --params-file config/fr3_droid.yaml`)."""
    return spin_managed(PolicyNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
