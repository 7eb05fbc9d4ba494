"""Each instruction at its own merge: the recipe cache, superseded merges, and the control loop's routing under racing
instruction changes (the real ModelManager, tiny reference models on disk, the real loop, executor and streams)."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from fake_robot import HOME_Q, frames
from ros_helpers import make_checkpoints

from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig
from retain_ros.control.control_loop import ControlLoop
from retain_ros.control.inputs import INSTRUCTION, JOINTS, InputSettings, NodeInputs
from retain_ros.control.messages import JointReading
from retain_ros.merge.live import LiveMerger
from retain_ros.ros.processes import wait_until
from retain_ros.serving.model_manager import ModelManager
from retain_ros.serving.recipes import MergeRequest, RecipeBook, parse_rules

S = 10**9
TARGET = "push the red cube onto the purple plate"
OTHER = "stack the blue cube on the green cube"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    base, ft = make_checkpoints(tmp_path_factory.mktemp("ck"))
    return str(base), (str(ft[0]),)


def request(ckpts, alpha, **kw) -> MergeRequest:
    return MergeRequest(ckpts[0], ckpts[1], alpha, **kw)


def pointers(policy) -> dict[str, int]:
    return {name: tensor.data_ptr() for name, tensor in policy.named_parameters()}


def wait(predicate, what="the model manager"):
    return wait_until(predicate, 20.0, what, poll_s=0.005)


def serve(manager, req) -> object:
    """Ask for `req` and swap it in as the control thread would; returns the served model."""
    manager.request(req)
    wait(lambda: manager._ready is not None or (manager.idle() and manager.serving.request.same_recipe(req)))
    return manager.take_swap() or manager.serving


def test_switching_back_to_a_recipe_is_a_reference_swap_from_the_cache(ckpts):
    manager = ModelManager()
    first = manager.load_initial(request(ckpts, 0.5))
    policy = first.policy
    first_copy = pointers(policy)
    manager.start()
    try:
        other = serve(manager, request(ckpts, 0.9, route="target"))
        assert not other.cached and other.weights_id != first.weights_id
        builds = manager.counts["builds"]
        manager.request(request(ckpts, 0.5))
        assert manager._ready is not None and manager._ready.cached  # found by request() itself, no worker round
        back = manager.take_swap()
        assert back.cached and back.weights_id == first.weights_id and back.merge_s == 0.0
        assert pointers(policy) == first_copy  # the very tensors that served first: nothing merged, nothing copied
        assert manager.counts["builds"] == builds and manager.counts["cache_hits"] == 1
        again = serve(manager, request(ckpts, 0.9, route="target"))
        assert again.cached and again.weights_id == other.weights_id
        memory = manager.memory()
        assert memory["spare_copies"] == 1 and [c["route"] for c in memory["cached_recipes"]] == ["default"]
    finally:
        manager.close()


def test_the_cache_stays_within_its_budget_and_overwrites_the_least_recently_served_merge(ckpts):
    probe = ModelManager()
    model_bytes = probe.load_initial(request(ckpts, 0.5)).memory.model_bytes
    probe.close()
    manager = ModelManager(cache_budget_bytes=2 * model_bytes + 1)  # two spare copies
    policy = manager.load_initial(request(ckpts, 0.5)).policy
    manager.start()
    try:
        served = []
        for alpha in (0.6, 0.7, 0.8, 0.5, 0.7, 0.6):
            model = serve(manager, request(ckpts, alpha))
            served.append((alpha, model.cached))
            assert len(policy.spare_copies()) <= 2 and manager.memory()["spare_copies"] <= 2
            assert manager.memory()["cache_capacity"] == 2
            assert manager.memory()["cache_gb"] <= 2 * model_bytes / 1e9 + 1e-4
        # 0.5 was overwritten by 0.8's merge (least recently served), 0.7 was still kept, 0.6 was overwritten by 0.5's
        assert served == [(0.6, False), (0.7, False), (0.8, False), (0.5, False), (0.7, True), (0.6, False)]
    finally:
        manager.close()


def test_a_merge_superseded_while_it_runs_is_never_served_and_is_kept_for_later(ckpts):
    manager = ModelManager()
    first = manager.load_initial(request(ckpts, 0.5))
    manager.start()
    try:
        serve(manager, request(ckpts, 0.9))  # 0.5 now waits in the cache
        merger = manager._merger
        release, started = threading.Event(), threading.Event()
        original = merger.merge_into

        def slow_merge(*args, **kwargs):  # the real merge, held until the instruction has changed again
            started.set()
            release.wait(10)
            return original(*args, **kwargs)

        merger.merge_into = slow_merge
        manager.request(request(ckpts, 0.3, route="third"))
        assert started.wait(10)
        manager.request(request(ckpts, 0.5))  # changed again while 0.3 merges: the cached 0.5 is ready at once
        release.set()
        swapped = manager.take_swap()
        assert swapped.weights_id == first.weights_id and swapped.cached
        wait(lambda: manager.counts["superseded"] == 1)
        assert manager.take_swap() is None  # the superseded 0.3 merge is not offered to the control thread
        merger.merge_into = original
        recipes = LiveMerger.from_checkpoints(*ckpts[:1], list(ckpts[1]))
        id_03 = recipes.recipe_id(recipes.resolve(0.3))
        assert id_03 in manager._cache  # kept: asking for it later is a reference swap
        later = serve(manager, request(ckpts, 0.3, route="third"))
        assert later.cached and later.weights_id == id_03
    finally:
        manager.close()


def test_chunks_under_racing_instruction_changes_always_come_from_their_instructions_recipe(ckpts):
    """100 instruction changes from another thread while the control loop runs: every chunk carries the weights of
    its own instruction's recipe, and after the first round trip, switching is a reference swap."""
    manager = ModelManager()
    book = RecipeBook(request(ckpts, 0.2), parse_rules([f"{TARGET}=0.9", "stack .*=vision:0,language:0.5,action:1"]))
    manager.load_initial(book.default)
    recipes = LiveMerger.from_checkpoints(ckpts[0], list(ckpts[1]))
    expected = {route: recipes.recipe_id(recipes.resolve(book.route(text).alpha_spec()))
                for route, text in ((TARGET, TARGET), ("stack .*", OTHER))}
    clock = [S]
    inputs = NodeInputs(InputSettings(gripper_states_topic=""), ("exterior", "wrist"))
    published, stops = [], []
    loop = ControlLoop(inputs, manager, ChunkExecutor(ExecutorConfig(execute_steps=2)), lambda: clock[0],
                       published.append, 1 / 15, lambda: "", lambda *e: None, send_stop=stops.append, recipes=book)
    manager.start()
    changes, stop = [], threading.Event()

    def operator():  # `ros2 topic pub` of alternating instructions, at random moments 0-2 chunks apart
        rng = random.Random(0)
        try:
            change_instructions(rng)
        finally:
            stop.set()  # also when this thread fails, so the loop below ends and the test reports it

    def change_instructions(rng):
        for i in range(100):
            text = (TARGET, OTHER)[i % 2]
            inputs.on_instruction(text, clock[0])
            changes.append(text)
            # waits on chunks, not on loop steps: the loop spins fast while a merge runs on a slow machine
            until, give_up = len(published) + rng.randint(0, 2), time.monotonic() + 30
            while len(published) < until and time.monotonic() < give_up:
                stop.wait(rng.uniform(0.0, 0.002))

    try:
        thread = threading.Thread(target=operator)
        thread.start()
        while not stop.is_set():
            clock[0] += S // 15
            for cam, image in frames().items():
                inputs.streams.put(cam, image, clock[0])
            inputs.streams.put(JOINTS, JointReading(np.asarray(HOME_Q, float), None), clock[0])
            inputs.streams.put(INSTRUCTION, inputs.current_instruction(), clock[0])
            loop.step()
        thread.join()
    finally:
        manager.close()
    assert len(changes) == 100
    chunks = [done for done in published if done.new_chunk]
    assert {done.instruction for done in chunks} == {TARGET, OTHER}
    for done in chunks:
        route = book.route(done.instruction).route
        assert done.model.request.route == route and done.model.weights_id == expected[route], done.instruction
        assert np.isfinite(done.plan.positions).all()
    switches = sum(a.instruction != b.instruction for a, b in zip(chunks, chunks[1:]))
    assert switches >= 5
    # two merges (plus at most one superseded while it ran); every later switch was a reference swap from the cache
    assert manager.counts["builds"] <= 3 and manager.counts["cache_hits"] >= switches - 2


def test_one_alpha_per_finetuned_checkpoint_merges_two_skills_in_sequence(tmp_path):
    """`0.9,0` with two finetuned checkpoints: the first skill at 0.9, the second left out (sequential merge)."""
    base, fts = make_checkpoints(tmp_path, num_finetuned=2)
    paths = (str(fts[0]), str(fts[1]))
    book = RecipeBook(MergeRequest(str(base), paths, 0.5), parse_rules(["push .*=0.9,0", "stack .*=0.9,0.8"]))
    recipes = LiveMerger.from_checkpoints(str(base), list(paths))
    manager = ModelManager()
    manager.load_initial(book.route(TARGET))
    manager.start()
    try:
        for text, alphas in ((TARGET, (0.9, 0.0)), (OTHER, (0.9, 0.8)), ("wave", (0.5,))):
            model = serve(manager, book.route(text))
            assert model.weights_id == recipes.recipe_id(recipes.resolve(alphas)), text
            assert set(model.alphas.values()) == {alphas if len(alphas) == 2 else alphas * 2}
    finally:
        manager.close()
