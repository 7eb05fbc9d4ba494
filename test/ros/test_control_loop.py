"""The control thread's paths around a stop: streams going stale or a pause during inference, resuming after a stop,
and a pause racing a publish (real tiny models, the real executor and streams; the clock is the test's)."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from fake_robot import HOME_Q, INSTRUCTION, frames
from ros_helpers import make_checkpoints

from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig
from retain_ros.control.inputs import JOINTS, InputSettings, NodeInputs
from retain_ros.control.messages import JointReading
from retain_ros.control.control_loop import ControlLoop
from retain_ros.errors import ConfigError
from retain_ros.fr3 import FR3_DQ_MAX
from retain_ros.serving.model_manager import MergeRequest, ModelManager

S = 10**9


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    base, ft = make_checkpoints(tmp_path_factory.mktemp("ck"))
    manager = ModelManager()
    manager.load_initial(MergeRequest(str(base), (str(ft[0]),), 0.5))
    return manager


class Rig:
    """A ControlLoop with its clock, inputs and what it published and stopped."""

    def __init__(self, manager, mode="chunk", publish_hook=None):
        self.clock = [S]
        self.inputs = NodeInputs(InputSettings(gripper_states_topic=""), ("exterior", "wrist"))
        self.published, self.stops, self.events = [], [], []
        self.publish_hook = publish_hook
        self.grippers = []  # (clock ns, position) of every gripper position published
        self.loop = ControlLoop(self.inputs, manager, ChunkExecutor(ExecutorConfig(execute_steps=3, mode=mode)),
                                lambda: self.clock[0], self._publish, 1 / 15, lambda: INSTRUCTION,
                                lambda *event: self.events.append(event), send_stop=self.stops.append,
                                publish_gripper=lambda g: self.grippers.append((self.clock[0], g)))
        self.predict = manager.serving.policy.predict

    def _publish(self, done):
        if self.publish_hook is not None:
            self.publish_hook()
        self.published.append(done)

    def feed(self, q=HOME_Q, velocities=None, stamp_ns=0):
        for cam, image in frames().items():
            self.inputs.streams.put(cam, image, self.clock[0])
        self.inputs.streams.put(JOINTS, JointReading(np.asarray(q, float), velocities), self.clock[0], stamp_ns)

    def commanding(self):
        self.feed()
        done = self.loop.step()
        assert done is not None and self.loop.state.state == "commanding"
        return done

    def during_inference(self, manager, action):
        policy = manager.serving.policy

        def predict(obs):  # the real model; `action` happens while it runs
            chunk = self.predict(obs)
            action()
            return chunk

        policy.predict = predict
        return policy


@pytest.fixture
def rig(manager):
    rig = Rig(manager)
    yield rig
    manager.serving.policy.predict = rig.predict


def test_a_joint_stream_going_stale_during_inference_sends_no_chunk_and_stops_the_arm(rig, manager):
    first = rig.commanding()
    assert first.plan.duration_s > 0.3  # still running when the stale stream is noticed
    rig.clock[0] += int(0.02 * S)
    rig.feed()
    rig.loop._next_ns = 0  # the next chunk is due now

    def joints_go_quiet():  # 0.26 s of inference without a joint state: older than joint_states_max_age_s 0.25
        rig.clock[0] += int(0.26 * S)

    rig.during_inference(manager, joints_go_quiet)
    assert rig.loop.step() is None and len(rig.published) == 1
    assert rig.loop.state.state == "waiting" and "joint_states: stale" in rig.loop.state.reason
    assert len(rig.stops) == 1  # the running chunk is stopped, from the running command's state (no fresh joints)
    t = (rig.stops[0].sent_ns - first.plan.sent_ns) * 1e-9
    np.testing.assert_allclose(rig.stops[0].start_velocity, first.plan.state_at(t)[1])


def test_a_pause_during_inference_stops_the_arm_at_once_and_sends_nothing_after(rig, manager):
    rig.commanding()
    rig.clock[0] += int(0.05 * S)
    rig.feed()
    rig.loop._next_ns = 0
    order = []

    def operator_pauses():  # ~/pause from another thread while the model runs: it must not wait for the model
        thread = threading.Thread(target=lambda: (rig.loop.pause("paused by ~/pause"), order.append("paused")))
        thread.start()
        thread.join(10)
        order.append(f"stops={len(rig.stops)}")

    rig.during_inference(manager, operator_pauses)
    assert rig.loop.step() is None
    assert order == ["paused", "stops=1"]  # the stop went out before the model finished
    assert len(rig.published) == 1 and rig.loop.state.state == "paused" and not rig.loop.commanding()


@pytest.mark.parametrize("velocities", [None, np.full(7, 0.05)])
def test_resume_after_a_stop_plans_from_the_decelerating_arm(rig, velocities):
    first = rig.commanding()
    rig.clock[0] += int(0.1 * S)
    rig.loop.pause("paused by ~/pause")
    stop = rig.stops[-1]
    rig.clock[0] += int(stop.duration_s * 0.3 * S)  # resumed while the stop still decelerates the arm
    rig.loop.resume()
    q, v = stop.state_at(stop.duration_s * 0.3)
    assert np.abs(v).max() > 0.01
    rig.feed(q, velocities)
    done = rig.loop.step()
    assert done is not None and done is not first
    if velocities is None:  # the running stop's velocity stands in for the arm's
        np.testing.assert_allclose(done.plan.start_velocity, v, atol=1e-9)
    else:  # the measured one, carried over the 2 ms until the controller reads the command by the stop's braking
        np.testing.assert_allclose(done.plan.start_velocity, velocities, atol=10.0 * 0.002)
        assert not np.allclose(done.plan.start_velocity, v, atol=0.01)


def test_no_trajectory_leaves_after_pause_returns(manager):
    """Pause lands while a command is on its way out: either it goes out before pause returns, or not at all."""
    about_to_publish, published_after = threading.Event(), []
    release = threading.Event()

    def slow_publish():  # the control thread has passed every check and is publishing
        about_to_publish.set()
        release.wait(0.2)

    rig = Rig(manager, publish_hook=slow_publish)
    rig.feed()
    control = threading.Thread(target=rig.loop.step)
    control.start()
    assert about_to_publish.wait(30)
    pauser = threading.Thread(target=lambda: (rig.loop.pause("paused by ~/pause"),
                                              published_after.append(len(rig.published))))
    pauser.start()
    release.set()
    control.join(30)
    pauser.join(30)
    assert published_after == [len(rig.published)]  # nothing was published after pause returned
    assert rig.stops and rig.loop.state.state == "paused"  # and pause stopped what had gone out
    rig.clock[0] += int(0.01 * S)
    rig.feed()
    assert rig.loop.step() is None and len(rig.published) == published_after[0]


def test_home_pauses_the_policy_and_sends_one_slow_move_that_ends_at_rest(rig):
    rig.feed()
    home = HOME_Q + np.array([0.3, 0.0, 0.0, 0.0, 0.0, -0.2, 0.0])
    move = rig.loop.go_home(home, speed_scale=0.1)
    assert rig.loop.state.state == "paused" and "homing" in rig.loop.state.reason
    assert rig.stops == [move]
    np.testing.assert_allclose(move.positions[-1], home)
    assert (move.velocities[-1] == 0.0).all()
    peak = np.abs([move.state_at(t)[1] for t in np.linspace(0.0, move.duration_s, 400)]).max(axis=0)
    assert (peak <= 0.1 * np.asarray(FR3_DQ_MAX) + 1e-6).all() and peak[0] > 0.05  # slow, and it moves
    rig.clock[0] += int(0.1 * S)
    rig.feed()
    assert rig.loop.step() is None and rig.published == []  # paused: nothing from the policy
    rig.loop.resume()
    rig.clock[0] += int(move.duration_s * S)
    rig.feed(home)
    assert rig.loop.step() is not None and rig.loop.state.state == "commanding"


def test_home_is_refused_without_a_fresh_joint_state_or_for_a_target_outside_the_limits(rig):
    rig.feed()
    rig.clock[0] += int(1.0 * S)  # the last joint state is a second old
    with pytest.raises(ConfigError, match="no fresh joint state"):
        rig.loop.go_home(HOME_Q, 0.1)
    rig.feed()
    outside = HOME_Q + np.array([0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0])
    with pytest.raises(ConfigError, match="outside the joint limits"):
        rig.loop.go_home(outside, 0.1)
    assert rig.stops == [] and rig.loop.state.state == "paused"  # nothing sent; the policy stays paused


def test_an_episode_that_runs_past_its_timeout_pauses_and_resume_starts_the_next(rig):
    rig.loop.episode_timeout_s = 1.0
    rig.commanding()
    for _ in range(20):  # 1.33 s of ticks
        rig.clock[0] += S // 15
        rig.feed()
        rig.loop.step()
    assert rig.loop.state.state == "paused" and "episode timeout after 1 s" in rig.loop.state.reason
    assert len(rig.stops) == 1  # the running chunk was stopped
    sent = len(rig.published)
    rig.clock[0] += S // 15
    rig.feed()
    assert rig.loop.step() is None and len(rig.published) == sent
    rig.loop.resume()
    assert rig.commanding() is not None  # a new episode, with a new clock


def test_home_from_a_moving_arm_brakes_along_the_motion_first(rig):
    running = rig.commanding()
    rig.clock[0] += int(0.1 * S)
    rig.feed()
    v0 = running.plan.state_at(0.1)[1]
    assert np.abs(v0).max() > 0.05
    move = rig.loop.go_home(HOME_Q, speed_scale=0.1)
    assert len(move.positions) == 2 and (move.velocities == 0.0).all()  # rest after braking, then home
    np.testing.assert_allclose(move.positions[-1], HOME_Q)
    speeds = np.abs([move.state_at(t)[1] for t in np.linspace(0.0, move.duration_s, 400)])
    assert (speeds.max(axis=0) <= np.maximum(np.abs(v0), 0.1 * np.asarray(FR3_DQ_MAX)) + 1e-6).all()


def test_a_home_move_is_stopped_by_pause_by_halt_and_by_stale_joints(rig):
    rig.feed()
    home = HOME_Q + np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    move = rig.loop.go_home(home, speed_scale=0.1)
    rig.clock[0] += int(0.3 * move.duration_s * S)  # mid-move
    rig.feed(move.state_at(0.3 * move.duration_s)[0])
    rig.loop.pause("paused by ~/pause")
    assert len(rig.stops) == 2 and rig.stops[-1].is_stop  # the move, then its stop
    rig.loop.pause("paused by ~/pause")
    assert len(rig.stops) == 2  # nothing runs any more: no second stop

    rig.loop.go_home(home, speed_scale=0.1)
    rig.clock[0] += int(0.1 * S)
    assert rig.loop.halt("deactivated") is not None  # deactivate while homing: the stop comes back to be sent

    rig.loop.resume()
    rig.loop.pause("again")
    rig.feed()
    rig.loop.go_home(home, speed_scale=0.1)
    sent = len(rig.stops)
    rig.clock[0] += int(0.5 * S)  # no joint state for half a second
    rig.loop.step()
    assert len(rig.stops) == sent + 1 and "joint states went stale" in rig.loop.state.reason


def closing_at_the_second_action(rig):
    """The rig's real model, with every chunk open at its 1st action and closed from its 2nd."""
    def predict(obs):
        chunk = rig.predict(obs)
        actions = chunk.actions.copy()
        actions[:, 7] = [0.0] + [1.0] * (len(actions) - 1)
        return replace(chunk, actions=actions)

    return predict


def test_each_action_closes_the_gripper_at_its_own_time_and_a_pause_sends_no_more(rig, manager):
    """A chunk that closes at its 2nd action closes there, not when a later chunk starts with the close."""
    manager.serving.policy.predict = closing_at_the_second_action(rig)
    first = rig.commanding()
    assert rig.grippers == [(first.plan.sent_ns, 0.0)]
    due_ns = first.plan.sent_ns + int(first.plan.times_s[0] * S)  # the 1st action's point: the 2nd action begins
    while rig.clock[0] + int(S / 15) < due_ns:  # ticks before it publish nothing new
        rig.clock[0] += int(S / 15)
        rig.feed()
        assert rig.loop.step() is None and len(rig.grippers) == 1
    rig.clock[0] = due_ns
    rig.feed()
    assert rig.loop.step() is None
    assert rig.grippers[-1] == (due_ns, 1.0) and len(rig.published) == 1
    rig.loop.pause("paused by ~/pause")
    rig.clock[0] += int(S / 15)
    rig.feed()
    rig.loop.step()
    assert len(rig.grippers) == 2  # a stopped command's schedule is not followed


def test_a_stopped_commands_gripper_schedule_is_not_followed_after_resume(rig, manager):
    manager.serving.policy.predict = closing_at_the_second_action(rig)
    first = rig.commanding()
    rig.loop.pause("paused by ~/pause")  # before its close is due
    rig.clock[0] += int(0.5 * S)  # past the stopped command's close
    rig.feed()
    assert rig.loop.step() is None
    rig.loop.resume()
    rig.clock[0] += int(S / 15)
    second = rig.commanding()
    assert rig.grippers == [(first.plan.sent_ns, 0.0), (second.plan.sent_ns, 0.0)]  # the new chunk's own, only
