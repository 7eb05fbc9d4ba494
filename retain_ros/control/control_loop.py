"""The policy node's control thread as plain logic: fresh streams -> observation -> inference -> safe command.

Runs on its own thread (never in an executor callback), woken every control period, stopped by a threading.Event:
1. between chunks: let a ready re-merged model serve (`ModelManager.take_swap`), so a chunk never mixes models;
   each instruction is served at its recipe (`RecipeBook.route`: the `instruction_alphas` rule it matches, else the
   alpha parameters). The loop asks the manager for the current instruction's recipe at every tick, and infers for
   an instruction only with a model built for its route: after the instruction changes, a cached recipe serves at
   once (a reference swap); otherwise nothing is commanded (the running motion is stopped) until its merge is ready.
   An alpha change within the same route keeps the old merge serving until the new one is ready, as before;
2. paused or any stream not fresh -> publish nothing (the controller holds at the end of its short trajectory);
   commanding resumes by itself once every stream is fresh again;
3. chunk mode: when the running command is about to end (its duration minus the expected inference time), build the
   observation, run the policy, plan the command with the chunk executor and hand it to `publish`;
   stream mode: every tick, send the chunk's next action (the step re-anchored on the latest measured joint
   positions); when the chunk's `execute_steps` actions are used up, infer the next chunk first. As in openpi's DROID
   client, inference is synchronous and its actions start at the first: the arm rests at the last step's target
   while the model runs, so no action's time has passed.
The observation time is the node-clock time the observation was assembled; it travels with the chunk so that the
executor drops actions whose time passed during inference.

Every command is planned from the newest joint state (positions and velocities, with its age: the executor
extrapolates it to where the controller will start). One lock, the command gate, holds the executor and every
publish: `pause` takes it, so once `pause` returns no trajectory (and no gripper goal: `commanding` is false) goes out
until `resume`, and the stop `pause` sends itself is the last command. Inference runs outside the gate, under the
manager's `weights_lock`. With one model copy, an alpha change holds the arm the same way (`hold_for_merge`): the
running motion is stopped and nothing is commanded until the control thread takes the merged model (a chunk inferred
while the weights changed is dropped), then commanding resumes by itself.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import ActionChunk
from retain_ros.control.chunk_executor import ChunkExecutor, MeasuredState, PlannedCommand
from retain_ros.control.inputs import JOINTS, NodeInputs
from retain_ros.control.streams import Sample
from retain_ros.worker_thread import WorkerThread

if TYPE_CHECKING:  # the loop only calls the managers: control/ loads without torch
    from retain_ros.serving.model_manager import ModelManager, ServingModel
    from retain_ros.serving.recipes import MergeRequest, RecipeBook
    from retain_ros.steering.manager import SteeringManager
    from retain_ros.steering.selection import Steered


CONTROLLER_DELAY_S = 0.002  # from planning to the controller's first sample of a command: publish, DDS, a 1 kHz tick
MAX_TRANSPORT_S = 0.1  # a joint state's stamp this much older than its arrival is on another clock: not used


def measured_state(sample: Sample, now_ns: int) -> MeasuredState:
    """The joint stream's sample as the executor's `MeasuredState`, aged to the controller's first sample.

    The age counts from the message's header stamp where that is on the node's clock (arrival minus stamp between 0
    and `MAX_TRANSPORT_S`), else from its arrival.
    """
    reading = sample.value
    transport = (sample.received_ns - sample.stamp_ns) * 1e-9 if sample.stamp_ns > 0 else 0.0
    age = (now_ns - sample.received_ns) * 1e-9 + (transport if 0.0 <= transport <= MAX_TRANSPORT_S else 0.0)
    return MeasuredState(reading.positions, reading.velocities, max(0.0, age) + CONTROLLER_DELAY_S)


@dataclass
class Executed:
    """What one chunk produced, handed to the node's publishers.

    Attributes:
        chunk: the raw policy output.
        plan: the command sent to the controller.
        model: the model (and weights identity) that computed the chunk.
        inference_s: wall time of `predict`.
        image_stamp_ns: newest camera header stamp in the observation.
        sequence: chunk counter.
        new_chunk: the command is the first from this chunk (stream mode sends several per chunk).
        instruction: the instruction the model saw.
        steered: how steering chose the chunk among samples (None: no steering manager).
    """

    chunk: ActionChunk
    plan: PlannedCommand
    model: ServingModel
    inference_s: float
    image_stamp_ns: int
    sequence: int
    new_chunk: bool = True
    instruction: str = ""
    steered: Steered | None = None


@dataclass
class LoopState:
    """What the loop is doing (read by the status publisher).

    Attributes:
        state: 'waiting', 'commanding', 'paused', 'holding' (an in-place merge) or 'stopped'.
        reason: why it is not commanding (stream problems, rejected chunk).
        chunks: chunks published; commands: trajectories sent (more than chunks in stream mode); rejected: chunks
        refused by the executor; inference_s: last predict time.
    """

    state: str = "waiting"
    reason: str = "starting"
    chunks: int = 0
    commands: int = 0
    rejected: int = 0
    inference_s: float = 0.0
    inference_ema_s: float = 0.0
    last_rejection: str = ""
    problems: dict[str, str] = field(default_factory=dict)


class ControlLoop:
    """The control thread.

    Args:
        inputs: the node's input streams and observation assembly (shared with offline evaluation).
        manager: the model manager (serving model and swaps).
        executor: chunk -> command.
        clock_ns: the node clock (sim or wall time) in nanoseconds.
        publish: called with every executed chunk (from this thread).
        period_s: control period.
        instruction: returns the instruction parameter ('' = use the topic).
        gripper_max_width_m: to turn finger positions into a DROID gripper position.
        on_event: (level, message) for log lines worth a human's attention.
        send_stop: called with the stop command when commanding stops mid-chunk (`ChunkExecutor.stop`), and with
            the ~/home move (`go_home`).
        blocked: returns why commands would not be executed now (the controller is inactive), or None.
        recipes: the recipe of each instruction (default: the serving model's request for every instruction).
        steering: chooses each chunk among samples of the policy (value-guided steering); None: `predict`.
        publish_gripper: called with the gripper position (0 open .. 1 closed) each time the one due changes: each
            executed action's own, at its time within the running command (`PlannedCommand.gripper_at`).
    """

    def __init__(self, inputs: NodeInputs, manager: ModelManager, executor: ChunkExecutor,
                 clock_ns: Callable[[], int], publish: Callable[[Executed], None], period_s: float,
                 instruction: Callable[[], str], on_event: Callable[[str, str], None],
                 send_stop: Callable[[PlannedCommand], None] | None = None,
                 blocked: Callable[[], str | None] = lambda: None, recipes: RecipeBook | None = None,
                 steering: SteeringManager | None = None,
                 publish_gripper: Callable[[float], None] | None = None) -> None:
        self.inputs, self.manager, self.executor, self.steering = inputs, manager, executor, steering
        self._recipes = recipes
        self._route_lock = threading.Lock()
        self.clock_ns, self.publish, self.period_s = clock_ns, publish, period_s
        self.instruction, self.on_event, self.send_stop, self.blocked = instruction, on_event, send_stop, blocked
        self.state = LoopState()
        self.paused = threading.Event()
        self.pause_reason = "paused by ~/pause"
        self._worker = WorkerThread("retain_control", self._run)
        self._stop = self._worker.stop_event
        self._next_ns = 0
        self._sequence = 0
        self._config_lock = threading.Lock()
        self._gate = threading.RLock()  # the executor and every publish; `pause` takes it (module docstring)
        self._pending_config = None  # ExecutorConfig waiting for the next tick
        self._streaming: Executed | None = None  # stream mode: the chunk whose actions are being sent
        self._stream_next = 0  # stream mode: index of its next action
        self.episode_timeout_s = 0.0  # commanding time per episode before the loop pauses itself (0 = no limit)
        self._episode: tuple[str, int | None] | None = None  # (instruction, first command's time) of this episode
        self._homing = False  # a ~/home move was sent and may still run: pause, halt and stale joints stop it
        self.publish_gripper = publish_gripper
        self._gripper_plan: PlannedCommand | None = None  # the running command whose gripper schedule is followed
        self._gripper_sent: float | None = None  # the last gripper position published from it

    @property
    def streams(self):
        """The node's input streams, as `NodeInputs` holds them."""
        return self.inputs.streams

    @property
    def recipes(self) -> RecipeBook | None:
        """The recipe of each instruction."""
        return self._recipes

    def set_recipes(self, recipes: RecipeBook) -> None:
        """New recipes (any thread; a parameter change): asked of the manager for the current instruction at once."""
        self._recipes = recipes
        self.route_now()

    def route_now(self, instruction: str | None = None) -> MergeRequest | None:
        """Ask the manager for the recipe of `instruction` (default: the current one) unless it is already wanted.

        Returns the request, or None without recipes or before any instruction. Any thread.
        """
        recipes = self._recipes
        if recipes is None:
            return None
        if instruction is None:
            instruction = self.inputs.current_instruction(self.instruction())
        request = recipes.route(instruction) if instruction else recipes.default
        with self._route_lock:
            if not request.same_recipe(self.manager.wanted):
                self.manager.request(request)
        return request

    def pause(self, reason: str) -> None:
        """Stop commanding until `resume`, and stop the running motion now (any thread); `reason` shows in the status.

        Once it returns nothing more is published: the control thread checks the pause under the same gate.
        """
        with self._gate:
            self.pause_reason = reason
            self.paused.set()
            self._not_commanding("paused", reason)
            self._stop_homing()

    def hold_for_merge(self, reason: str) -> None:
        """Stop the running motion and command nothing until the manager's in-place merge is swapped in.

        Any thread: the merge worker calls it before it writes the serving weights. A ~/home move is not the
        policy's: it runs on.
        """
        with self._gate:
            self._not_commanding("holding", reason)

    def go_home(self, target: np.ndarray, speed_scale: float) -> PlannedCommand:
        """Pause, then send one slow move to `target` from the newest joint state (any thread: the ~/home service).

        The loop stays paused afterwards; `resume` hands the arm back to the policy.

        Raises:
            ConfigError: no fresh joint state, the controller is not active, or the executor refuses the move (nothing
                is sent; the loop is paused all the same).
        """
        with self._gate:
            self.pause("homing: call ~/resume to command the policy again")
            now = self.clock_ns()
            samples, problems = self.streams.fresh(now)
            if JOINTS not in samples or JOINTS in problems:
                raise ConfigError(f"no fresh joint state ({problems.get(JOINTS, 'none received')}): the path home "
                                  "starts from the measured joints")
            blocked = self.blocked()
            if blocked:
                raise ConfigError(blocked)
            plan = self.executor.plan_move(target, measured_state(samples[JOINTS], now), now, speed_scale)
            if self.send_stop is not None:
                self.send_stop(plan)
            self._homing = True
            self.state.reason = self.pause_reason = (f"homing ({plan.duration_s:.1f} s): call ~/resume to command "
                                                     "the policy again")
        if plan.note:
            self.on_event("error", f"homing: the brake before the move: {plan.note}")
        self.on_event("info", f"homing: {plan.duration_s:.1f} s to {np.round(target, 3).tolist()}")
        return plan

    def commanding(self) -> bool:
        """Whether commands go out now (for the gripper goals, which another thread sends)."""
        return self.state.state == "commanding" and not self.paused.is_set() and not self._stop.is_set()

    def resume(self) -> None:
        """Command again from the next tick (once every stream is fresh); a new episode starts."""
        with self._gate:  # the policy's next plan starts from the home move's state, as from any running command
            self._homing = False
            self._episode = None
            self.paused.clear()

    def _stop_homing(self) -> None:
        """Under the gate: the stop of a ~/home move that may still run (none once it has ended)."""
        if self._homing:
            self._homing = False
            stop = self._stop_command()
            if stop is not None and self.send_stop is not None:
                self.send_stop(stop)

    def start(self) -> None:
        """Start the thread.

        Raises:
            RuntimeError: the previous control thread is still running; there are never two.
        """
        self._worker.start()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the thread after the current iteration (an inference in progress finishes, nothing more is sent).

        Returns whether it ended within `timeout_s`; if not, `start` refuses to start a second one.
        """
        return self._worker.stop(timeout_s)

    def _run(self) -> None:
        # Ticks on a fixed wall-clock grid, so the time a step takes (inference) does not stretch the period; a tick
        # missed because a step overran is dropped, not made up in a burst.
        next_tick = time.monotonic()
        while True:
            next_tick += self.period_s
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick, delay = time.monotonic(), 0.0
            if self._stop.wait(delay):
                return
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001  (the loop must survive anything)
                try:  # a failure after a command went out must still stop the arm and hold it (pause)
                    self.on_event("error", f"control step failed:\n{traceback.format_exc()}")
                    was_commanding = self.state.state == "commanding"
                    self._not_commanding("error", f"control step failed: {exc}")
                    if was_commanding:
                        self.pause(f"paused after an error ({exc}); fix it, then call ~/resume")
                except Exception:  # noqa: BLE001  (even the stop failed: stay alive, hold nothing more)
                    self.paused.set()

    def update_executor(self, **changes: object) -> None:
        """New execution settings (any thread): applied by the control thread at its next tick, all at once.

        The executor's derived limits are rebuilt there, so no plan ever mixes old and new settings.

        Raises:
            ConfigError: a value the executor refuses (nothing changes).
        """
        with self._config_lock:
            self._pending_config = replace(self._pending_config or self.executor.config, **changes)

    def step(self) -> Executed | None:
        """One iteration; returns what was published, if anything."""
        with self._config_lock:
            config, self._pending_config = self._pending_config, None
        if config is not None:
            self.executor.config = config
        self.route_now()
        self._take_swap()
        with self._gate:
            holding = self.manager.holding
            if holding:  # an in-place merge is writing the weights
                self._not_commanding("holding", holding)
                return None
            if self.paused.is_set():
                self._not_commanding("paused", self.pause_reason)
                if self._homing and JOINTS in self.streams.fresh(self.clock_ns())[1]:
                    self._stop_homing()  # the move is no longer watched: stop it, from the running command
                    self.pause_reason = self.state.reason = "homing stopped: the joint states went stale"
                return None
            reason = self.blocked()
            if reason:
                if self.state.state == "commanding":  # the controller went away under a running policy: hold it
                    self.pause(f"{reason}; call ~/resume once the controller is active again")
                self._not_commanding("waiting", reason)
                return None
            now = self.clock_ns()
            samples, problems = self.streams.fresh(now)
            if problems:
                self._stale(problems)
                return None
            if self._episode_over(now):
                return None
            self._follow_gripper(now)
            if self.executor.config.mode == "stream" and not self._chunk_used_up():
                return self._stream_step(now, samples)
            if self.executor.config.mode == "chunk" and now < self._next_ns:
                return None
        return self._infer_and_publish(now, samples)

    def _episode_over(self, now: int) -> bool:
        """Pause once an episode has run `episode_timeout_s` since its first command.

        An episode starts at ~/resume and at a new instruction.
        """
        instruction = self.inputs.current_instruction(self.instruction())
        if self._episode is None or self._episode[0] != instruction:
            self._episode = (instruction, None)  # its clock starts with its first command (`_send`)
        if self._episode[1] is None:
            return False
        elapsed = (now - self._episode[1]) * 1e-9
        if 0.0 < self.episode_timeout_s <= elapsed:
            self.on_event("warn", f"episode timeout: '{instruction}' ran {elapsed:.1f} s (episode_timeout_s "
                                  f"{self.episode_timeout_s:g})")
            self.pause(f"episode timeout after {self.episode_timeout_s:g} s of '{instruction}': call ~/resume "
                       "(or ~/home first) to start the next episode")
            return True
        return False

    def _chunk_used_up(self) -> bool:
        current = self._streaming
        return current is None or self._stream_next >= min(len(current.chunk.actions),
                                                           self.executor.config.execute_steps)

    def _stream_step(self, now: int, samples: dict) -> Executed | None:
        """Stream mode, under the gate: the next action of the current chunk."""
        current = self._streaming
        chunk, space = current.chunk, current.chunk.space
        try:  # `samples` are this tick's fresh streams: the step starts from the newest joint state
            plan = self.executor.plan_step(chunk.actions[self._stream_next], chunk.dt_s, space.kind,
                                           space.gripper_index, measured_state(samples[JOINTS], now), now)
        except ConfigError as exc:
            return self._reject(exc)
        done = replace(current, plan=plan, new_chunk=False)
        self._send(done)
        self._stream_next += 1
        return done

    def _take_swap(self) -> None:
        swapped = self.manager.take_swap()
        if swapped is not None:
            how = "from the recipe cache" if swapped.cached else f"merged in {swapped.merge_s * 1e3:.0f} ms"
            self.on_event("info", f"now serving generation {swapped.generation}, route '{swapped.request.route}', "
                                  f"alphas {swapped.request.describe()} ({how}; swap {self.manager.swap_s * 1e3:.2f} "
                                  f"ms), weights {swapped.weights_id[:12]}")

    def _serving_for(self, instruction: str) -> ServingModel | None:
        """The model to infer for `instruction` (between chunks): one built for its route, or None (why: the state)."""
        request = self.route_now(instruction)
        self._take_swap()
        model = self.manager.serving
        if request is None or model.request.route == request.route:
            return model
        reason = f"switching to the recipe of '{instruction}' ({request.route}: alphas {request.describe()})"
        if self.manager.idle() and self.manager.last_error:
            reason += f"; it failed: {self.manager.last_error}"
        if reason != self.state.reason:
            self.on_event("info", reason)
        self._not_commanding("waiting", reason)
        return None

    def _infer_and_publish(self, observed_ns: int, samples: dict) -> Executed | None:
        try:
            obs, image_stamp = self.inputs.assemble(samples, observed_ns, self.instruction())
        except ConfigError as exc:
            self._not_commanding("waiting", str(exc))
            return None
        with self._gate:
            model = self._serving_for(obs.instruction)
        if model is None:
            return None
        started = time.perf_counter()
        steered = None
        try:
            with self.manager.weights_lock:  # never while an in-place merge writes the weights
                if self.steering is None:
                    chunk = model.policy.predict(obs)
                else:  # between chunks: a new steering setting takes over here
                    steered = self.steering.choose(model.policy, obs)
                    chunk = steered.chunk
            model = self.manager.computed_by(model)  # a policy server may have swapped its weights meanwhile
        except ConfigError as exc:  # e.g. a NaN joint state: a refused observation, not a crash, at every tick
            reason = f"policy refused the observation: {exc}"
            if reason != self.state.reason:  # logged once per distinct problem, not at the control rate
                self.on_event("warn", f"{reason}; nothing is commanded until it is fixed")
            self._not_commanding("waiting", reason)
            return None
        inference_s = time.perf_counter() - started
        with self._gate:  # from here to the publish, a pause waits (and then stops what was sent)
            return self._plan_and_publish(model, chunk, obs, image_stamp, inference_s, observed_ns, steered)

    def _plan_and_publish(self, model, chunk, obs, image_stamp: int, inference_s: float,
                          observed_ns: int, steered: Steered | None = None) -> Executed | None:
        now = self.clock_ns()
        latest, late = self.streams.fresh(now)
        if late:  # a stream went stale while the model ran: its output must not move the arm
            self._stale(late)
            return None
        if self._stop.is_set():  # stopped while the model ran: nothing more is sent
            return None
        if self.manager.holding:  # the weights changed (in place) while the model ran: this chunk is not sent
            self._not_commanding("holding", self.manager.holding)
            return None
        held = "paused while the model ran" if self.paused.is_set() else self.blocked()
        if held:  # ~/pause or an inactive controller during inference: this chunk is not sent
            self._not_commanding("paused" if self.paused.is_set() else "waiting", held)
            return None
        measured = measured_state(latest[JOINTS], now)
        space = chunk.space
        try:
            if self.executor.config.mode == "stream":  # the first action, from where the arm is now
                plan = self.executor.plan_step(chunk.actions[0], chunk.dt_s, space.kind, space.gripper_index,
                                               measured, now)
            else:
                plan = self.executor.plan(chunk.actions, chunk.dt_s, space.kind, space.gripper_index,
                                          obs.joint_positions, measured, observed_ns, now)
        except ConfigError as exc:
            return self._reject(exc)
        self._sequence += 1
        done = Executed(chunk, plan, model, inference_s, image_stamp, self._sequence, instruction=obs.instruction,
                        steered=steered)
        self._send(done)
        if self.executor.config.mode == "stream":
            self._streaming, self._stream_next = done, 1
        st = self.state
        st.inference_s = inference_s
        st.inference_ema_s = inference_s if st.chunks == 0 else 0.8 * st.inference_ema_s + 0.2 * inference_s
        st.chunks += 1
        # Ask for the next chunk so that it arrives as this command's actions end (expected inference time ahead), at
        # most once per tick: the floor counts from this tick's start, so a slow inference does not skip the next one.
        lead_ns = int((st.inference_ema_s + self.period_s) * 1e9)
        self._next_ns = max(now + int(plan.actions_end_s * 1e9) - lead_ns,
                            observed_ns + int(self.period_s * 1e9) // 2)
        return done

    def _stale(self, problems: dict[str, str]) -> None:
        self._not_commanding("waiting", "; ".join(f"{k}: {v}" for k, v in sorted(problems.items())), problems)

    def _send(self, done: Executed) -> None:
        self.publish(done)
        self._gripper_plan, self._gripper_sent = done.plan, None
        self._follow_gripper(done.plan.sent_ns)
        if self._episode is not None and self._episode[1] is None:
            self._episode = (self._episode[0], done.plan.sent_ns)
        st = self.state
        st.commands += 1
        if st.state != "commanding":
            self.on_event("info", "all streams fresh: commanding")
        st.state, st.reason, st.problems = "commanding", "", {}

    def _follow_gripper(self, now_ns: int) -> None:
        """Publish the running command's gripper position due now, when it differs from the last one sent."""
        plan = self._gripper_plan
        if plan is None or self.publish_gripper is None:
            return
        position = plan.gripper_at((now_ns - plan.sent_ns) * 1e-9)
        if position is not None and position != self._gripper_sent:
            self.publish_gripper(position)
            self._gripper_sent = position

    def _reject(self, exc: Exception) -> None:
        self.state.rejected += 1
        self.state.last_rejection = str(exc)
        self._not_commanding("waiting", f"chunk rejected: {exc}")
        self.on_event("warn", f"chunk rejected, controller keeps holding: {exc}")
        return None

    def halt(self, reason: str) -> PlannedCommand | None:
        """After `stop` (deactivate, shutdown): the stop command for a motion still running, if any. Never raises.

        Taken under the gate, so a control thread that has not ended yet (a `stop` that timed out) publishes nothing
        more: it sees the stop event there.
        """
        with self._gate:
            was, homing = self.state.state, self._homing
            self.state.state, self._homing = "stopped", False  # so that nothing sends it a second time
            self.state.reason, self._next_ns, self._streaming = reason, 0, None
            self._gripper_plan = None
            return self._stop_command(from_joints=False) if was == "commanding" or homing else None

    def _stop_command(self, from_joints: bool = True) -> PlannedCommand | None:
        """The executor's stop: from the newest joint state while that is fresh, else from the running command."""
        now = self.clock_ns()
        measured = None
        if from_joints:
            samples, problems = self.streams.fresh(now)
            if JOINTS in samples and JOINTS not in problems:
                measured = measured_state(samples[JOINTS], now)
        stop = self.executor.stop(now, measured)
        if stop is not None and stop.note:
            self.on_event("error", f"stop: {stop.note}")
        return stop

    def _not_commanding(self, state: str, reason: str, problems: dict[str, str] | None = None) -> None:
        st = self.state
        if st.state == "commanding":
            self.on_event("warn", f"stopped commanding (controller holds): {reason}")
            stop = self._stop_command()
            if stop is not None and self.send_stop is not None:
                self.send_stop(stop)
        st.state, st.reason, st.problems = state, reason, dict(problems or {})
        self._next_ns = 0
        self._streaming = None
        self._gripper_plan = None  # nothing more of the stopped command's gripper schedule is sent
