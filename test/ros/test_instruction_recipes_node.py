"""Per-instruction recipes in the running node: an outside client publishes instructions the way `ros2 topic pub`
does, and every chunk the node commands for an instruction carries its recipe's weights identity."""

from __future__ import annotations

import random
import time

import pytest
from fake_robot import INSTRUCTION, FakeRobot
from ros_helpers import latest_status, wait_until
from std_msgs.msg import String
from test_policy_node import T, check_trajectory, start_policy

from retain_ros.merge.live import LiveMerger

NODE = "retain_policy"
CHUNKS = "/retain_policy/action_chunk"
OTHER = "stack the blue cube on the green cube"
RULES = ["pick up the red .*=0.9", "stack .*=vision:1,language:0.25,action:0.75"]


@pytest.mark.slow
def test_alternating_instructions_are_each_served_at_their_recipe(ros, tiny_checkpoints):
    _, _, observer, _ = ros
    root, base, finetuned = tiny_checkpoints
    recipes = LiveMerger.from_checkpoints(str(base), [str(f) for f in finetuned])
    expected = {"pick up the red .*": recipes.recipe_id(recipes.resolve(0.9)),
                "stack .*": recipes.recipe_id(recipes.resolve({"default": 0.5, "vision": 1.0, "language": 0.25,
                                                               "action": 0.75})),
                "default": recipes.recipe_id(recipes.resolve(0.5))}
    proc = start_policy(ros, tiny_checkpoints, execute_steps=2, alpha=0.5, instruction_alphas=RULES)
    FakeRobot(observer.node)  # publishes INSTRUCTION once, latched
    wait_until(lambda: (s := latest_status(observer)) and s["state"] == "commanding"
               and s["route"] == "pick up the red .*" and s, 60, "commanding the first instruction", proc)

    # a bad rule is refused with the item named; the running recipes stay
    result = observer.set_parameters(NODE, {"instruction_alphas": ["stack (.*=0.5"]})[0]
    assert not result.successful and "stack (.*=0.5" in result.reason and "regular expression" in result.reason
    result = observer.set_parameters(NODE, {"instruction_alphas": ["stack .*=0.5,0.5"]})[0]
    assert not result.successful and "2 alphas for 1 finetuned" in result.reason

    publisher = observer.node.create_publisher(String, T.instruction, 10)  # volatile, like `ros2 topic pub`
    rng = random.Random(1)
    sent = []
    for i in range(100):
        text = ("wave at the camera", OTHER, INSTRUCTION)[i % 3]  # "wave ..." matches no rule: alpha 0.5
        publisher.publish(String(data=text))
        sent.append(text)
        time.sleep(rng.uniform(0.02, 0.3))
    status = wait_until(lambda: (s := latest_status(observer)) and s["instruction"] == sent[-1]
                        and s["route"] == "default" and s["state"] == "commanding" and s, 30, "the last recipe", proc)
    assert status["recipe"] == "0.5" and status["instruction_rules"] == RULES
    assert status["memory"]["spare_copies"] <= status["memory"]["cache_capacity"]

    chunks = observer.received(CHUNKS)
    routes = {c.route for c in chunks}
    assert routes == {"pick up the red .*", "stack .*", "default"}, routes
    for chunk in chunks:
        route = {INSTRUCTION: "pick up the red .*", OTHER: "stack .*"}.get(chunk.instruction, "default")
        assert chunk.route == route and chunk.weights_id == expected[route], (chunk.instruction, chunk.route)
    switches = sum(a.instruction != b.instruction for a, b in zip(chunks, chunks[1:]))
    assert switches >= 30  # the instruction changed under a running node, again and again
    for msg in observer.received(T.arm_command):
        check_trajectory(msg)  # no invalid command: finite, inside the FR3's position and velocity limits
    assert status["merge_builds"] <= 4 and status["merge_cache_hits"] >= switches - 3  # reference swaps
