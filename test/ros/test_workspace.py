"""The Cartesian workspace: FR3 forward kinematics checked against the simulated arm, and planned points that would
put the hand outside its box or any part of the arm below the table are refused by the executor, in both modes."""

from __future__ import annotations

import numpy as np
import pytest

from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig, UnsafeChunk
from retain_ros.control.workspace import Workspace
from retain_ros.errors import ConfigError
from retain_ros.fr3 import FR3_Q_MAX, FR3_Q_MIN
from retain_ros.fr3_kinematics import POINT_NAMES, points
from retain_ros.sim.physics import TabletopPhysics

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])  # fingertips at (0.307, 0, 0.487) m
DT = 1.0 / 15.0
DOWN = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # shoulder forward: the hand goes down (rad/s)


def chunk(direction: np.ndarray, h: int = 8) -> np.ndarray:
    a = np.zeros((h, 8))
    a[:, :7] = direction
    return a


def plan(workspace: Workspace | None, actions: np.ndarray, q: np.ndarray = HOME):
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8, workspace=workspace))
    return executor.plan(actions, DT, "joint_velocity", 7, q, q, 0, 0)


def test_forward_kinematics_is_the_simulated_fr3s():
    import mujoco  # after retain_ros.sim, which sets MUJOCO_GL before mujoco's first import (rendering tests later)

    physics = TabletopPhysics()
    arm = [physics.model.joint(f"fr3_joint{i}").qposadr[0] for i in range(1, 8)]
    rng = np.random.default_rng(0)
    for q in rng.uniform(FR3_Q_MIN, FR3_Q_MAX, size=(50, 7)):
        physics.data.qpos[arm] = q
        mujoco.mj_kinematics(physics.model, physics.data)
        body = physics.data.body
        expected = [body("fr3_link4").xpos, body("fr3_link6").xpos, body("fr3_hand").xpos, physics.tcp_position()]
        np.testing.assert_allclose(points(q), np.array(expected), atol=1e-9)
    assert POINT_NAMES == ("elbow", "wrist", "flange", "fingertips")
    np.testing.assert_allclose(points(HOME)[3], [0.307, 0.0, 0.487], atol=1e-3)


def test_a_chunk_into_the_table_is_refused_with_the_configuration_named():
    table = Workspace(table_height_m=0.40)  # 8.7 cm under the fingertips at HOME
    assert plan(None, chunk(DOWN)).positions.shape[0] >= 8  # joint limits alone accept it
    with pytest.raises(UnsafeChunk) as refused:
        plan(table, chunk(DOWN))
    text = str(refused.value)
    assert "leaves the workspace: at q = [0.000, " in text and "the fingertips would be at" in text
    assert "below table_height_m 0.4" in text
    assert plan(table, chunk(-DOWN)).positions.shape[0] >= 8  # up, away from the table: accepted


def test_a_chunk_that_takes_the_hand_out_of_its_box_is_refused():
    box = Workspace(box_min=(-0.3, -0.9, 0.0), box_max=(0.35, 0.9, 1.2))  # fingertips at x 0.307 at HOME
    forward = np.array([0.0, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0])  # reach out: x grows past 0.35
    with pytest.raises(UnsafeChunk, match=r"outside workspace_min \[-0.3, -0.9, 0.0\] / workspace_max"):
        plan(box, chunk(forward))
    assert plan(Workspace(), chunk(forward)).positions.shape[0] >= 8  # the default box holds it


def test_a_streamed_step_is_checked_too():
    table = Workspace(table_height_m=0.48)  # 7 mm under the fingertips
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8, mode="stream", workspace=table))
    with pytest.raises(UnsafeChunk, match="below table_height_m"):
        executor.plan_step(chunk(DOWN * 2.0)[0], DT, "joint_velocity", 7, HOME, 0)
    assert executor.plan_step(chunk(-DOWN)[0], DT, "joint_velocity", 7, HOME, 0).positions.shape == (1, 7)


def test_an_arm_already_outside_may_come_back_but_not_go_farther_and_can_always_stop():
    low = HOME + 0.9 * DOWN  # fingertips at z 0.188
    table = Workspace(table_height_m=0.25)
    assert plan(table, chunk(-DOWN), q=low).positions.shape[0] >= 8  # back up towards the allowed space
    with pytest.raises(UnsafeChunk, match="below table_height_m"):
        plan(table, chunk(DOWN), q=low)
    executor = ChunkExecutor(ExecutorConfig(execute_steps=8, workspace=table))
    moving = executor.plan(chunk(-DOWN), DT, "joint_velocity", 7, low, low, 0, 0)
    stop = executor.stop(int(0.2 * 1e9), moving.positions[1])
    assert stop is not None and np.isfinite(stop.positions).all()


def test_bad_workspaces_are_one_clear_error():
    with pytest.raises(ConfigError, match="must be three finite numbers each"):
        Workspace(box_min=(0.5, 0.0, 0.0), box_max=(0.4, 1.0, 1.0))
    with pytest.raises(ConfigError, match="table_height_m=nan"):
        Workspace(table_height_m=float("nan"))


def test_the_arm_cannot_creep_out_over_many_commands_nor_one_excess_excuse_another():
    table = Workspace(table_height_m=0.45)  # fingertips at z 0.487 at HOME
    q, accepted = HOME.copy(), 0
    for _ in range(200):  # 1 mrad steps down, each planned from where the last one ended
        step = q + 0.001 * DOWN
        if table.problem(step[None, :], q) is not None:
            break
        q, accepted = step, accepted + 1
    assert accepted < 200 and points(q)[3, 2] >= 0.45 - 1e-3  # stopped at the table, 1 mm at most
    # a hand already 100 mm outside the box (in y) does not excuse 47 mm below the table
    box = Workspace(box_max=(1.0, -0.1, 1.2), table_height_m=0.30)  # fingertips at y 0 at HOME, and it stays
    low = HOME + 0.7 * DOWN  # fingertips at z 0.253
    assert "47 mm below table_height_m 0.3" in box.problem(low[None, :], HOME)


def test_a_home_move_whose_path_leaves_the_box_is_refused_though_both_ends_are_inside():
    """~/home checks its straight joint-space path, not only its ends: turning the base from -0.5 to +0.5 rad swings
    the hand (0.307 m out at HOME) through x = 0.307 between ends at x = 0.307 cos 0.5 = 0.269."""
    box = Workspace(box_min=(-0.3, -0.9, 0.0), box_max=(0.29, 0.9, 1.2))
    executor = ChunkExecutor(ExecutorConfig(workspace=box))
    yaw = np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert points(HOME - yaw)[3][0] < 0.29 and points(HOME + yaw)[3][0] < 0.29
    with pytest.raises(UnsafeChunk, match="the straight joint-space path to the move target") as refused:
        executor.plan_move(HOME + yaw, HOME - yaw, 0, speed_scale=0.1)
    assert "outside workspace_min [-0.3, -0.9, 0.0] / workspace_max [0.29, 0.9, 1.2]" in str(refused.value)
    move = executor.plan_move(HOME - 1.4 * yaw, HOME - yaw, 0, speed_scale=0.1)  # turning away: inside throughout
    np.testing.assert_allclose(move.positions[-1], HOME - 1.4 * yaw)
