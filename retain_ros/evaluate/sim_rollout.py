"""One closed-loop episode in the simulator, each chunk executed through the policy node's `ChunkExecutor`.

Chunk mode: the executor turns the chunk into one joint trajectory (the first `execute_steps` actions, integrated
from the observed joint positions, limits enforced, then a braking tail), the simulated joint_trajectory_controller
tracks it, and the policy is queried again when its last action is reached (the openpi DROID client executes 8 of 10);
the next trajectory replaces the running one before its tail, as on the node. Stream mode: one step per control
period, re-anchored on the measured joint positions. The simulator waits while the model runs, so no action is
skipped for latency. The episode ends when the task's success holds or at the task's step limit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig, PlannedCommand
from retain_ros.errors import ConfigError
from retain_ros.policy.interface import Observation, Policy
from retain_ros.sim.controller import JointTrajectory, TrajectoryPoint
from retain_ros.sim.droid import gripper_position_to_width
from retain_ros.sim.env import TabletopEnv
from retain_ros.steering.rollouts import RolloutRecorder
from retain_ros.steering.selection import Steerer


def observation_from_sim(obs: dict[str, np.ndarray], instruction: str, stamp_ns: int) -> Observation:
    """The Policy observation of a simulator observation (cameras 'exterior' and 'wrist')."""
    images = {key[: -len("_image")]: value for key, value in obs.items() if key.endswith("_image")}
    return Observation(images, obs["joint_positions"], float(obs["gripper_position"][0]), instruction, stamp_ns)


def plan_to_trajectory(plan: PlannedCommand, joint_names: Sequence[str]) -> JointTrajectory:
    """The JointTrajectory the node would publish for a planned command (header stamp 0: start now)."""
    velocities = [None] * len(plan.times_s) if plan.velocities is None else plan.velocities
    points = tuple(TrajectoryPoint(q, float(t), v) for q, t, v in zip(plan.positions, plan.times_s, velocities))
    return JointTrajectory(tuple(joint_names), points)


def rollout(policy: Policy, env: TabletopEnv, seed: int, execute_steps: int = 8, execution: str = "chunk",
            steerer: Steerer | None = None, recorder: RolloutRecorder | None = None,
            observer=None) -> dict[str, object]:
    """Run one closed-loop episode, executing every chunk through the node's ChunkExecutor.

    Chunk mode: one trajectory per chunk, followed to its end, then the next query. Stream mode: one step per control
    period, each re-anchored on the measured joint positions, `execute_steps` of them per chunk. A `steerer` chooses
    each chunk among samples (reseeded with the episode's seed); a `recorder` keeps every query for value learning;
    an `observer` (`sim_trace.EpisodeTrace`) is told of each query (`query(env, actions, gripper_index, executed)`)
    and each control period (`tick(env)`).

    Returns:
        A record: seed, success, steps, final reward, mean inference time (ms), chunks queried, chunks rejected by
        the executor, and with a value steerer the mean Q of the executed chunks and the mean spread over samples.
    """
    obs = env.reset(seed)
    executor = ChunkExecutor(ExecutorConfig(execute_steps=execute_steps, mode=execution))
    period_ns = round(env.config.physics.control_dt_s * 1e9)
    steerer = steerer or Steerer()
    steerer.reseed(seed)
    if recorder is not None:
        recorder.begin()
    infer_s, queries, rejected, result, values = 0.0, 0, 0, None, []
    while True:
        now_ns = env.num_steps * period_ns
        observation = observation_from_sim(obs, env.instruction, now_ns)
        started = time.perf_counter()
        steered = steerer.choose(policy, observation)
        infer_s += time.perf_counter() - started
        chunk = steered.chunk
        queries += 1
        if steered.values is not None:
            values.append((steered.value, steered.spread))
        if recorder is not None:
            recorder.add(observation, steered, env.num_steps)
        if observer is not None:
            observer.query(env, chunk.actions, chunk.space.gripper_index, execute_steps)
        steps = [chunk.actions] if execution == "chunk" else list(chunk.actions[:execute_steps])
        for action in steps:
            result, refused = _execute(executor, chunk, action, obs["joint_positions"], env, period_ns, observer)
            rejected += refused
            if result.done:
                record = {"seed": int(seed), "success": bool(result.success), "steps": env.num_steps,
                          "reward": float(result.reward), "infer_ms": 1e3 * infer_s / queries, "queries": queries,
                          "rejected": rejected}
                if values:
                    record["value"], record["value_spread"] = (float(np.mean(v)) for v in zip(*values))
                if recorder is not None:
                    recorder.end(env.task.name, env.task.variation.name, record, steerer.noise_scale)
                return record
            obs = result.observation


def _execute(executor: ChunkExecutor, chunk, actions: np.ndarray, q: np.ndarray, env: TabletopEnv,
             period_ns: int, observer=None) -> tuple[object, bool]:
    """Plan a whole chunk (chunk mode: `actions` is (H, D)) or one step (stream mode: (D,)) and tick until it ends.

    Returns the last tick's result and whether the executor refused the plan (the node then keeps holding, and so does
    the simulated controller, for one period).
    """
    now_ns = env.num_steps * period_ns
    space = chunk.space
    ticks, refused = 1, False
    try:
        if actions.ndim == 2:
            plan = executor.plan(actions, chunk.dt_s, space.kind, space.gripper_index, q, q, now_ns, now_ns)
        else:
            plan = executor.plan_step(actions, chunk.dt_s, space.kind, space.gripper_index, q, now_ns)
    except ConfigError:
        refused = True
    else:
        env.command_trajectory(plan_to_trajectory(plan, space.joint_names))
        ticks = 1 if actions.ndim == 1 else max(1, round(plan.actions_end_s * 1e9 / period_ns))
    for tick in range(ticks):
        gripper = None if refused else plan.gripper_at(tick * period_ns * 1e-9)  # each action's, when it is due
        if gripper is not None:
            env.command_gripper_width(gripper_position_to_width(gripper))
        result = env.tick()
        if observer is not None:
            observer.tick(env)
        if result.done:
            break
    return result, refused
