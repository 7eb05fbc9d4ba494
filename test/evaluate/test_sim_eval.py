"""`retain-eval sim`: the closed-loop comparison on tiny real checkpoints in the real simulator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retain_ros.errors import ConfigError
from retain_ros.evaluate.cli import main as retain_eval
from retain_ros.evaluate.sim_eval import EvalConfig, Variant, VariantPolicies, conditions, default_variants, jobs_of
from retain_ros.evaluate.sim_report import summarise, wilson_interval
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.processor_reference import NormalizationStats
from retain_ros.policy.reference_policy import example_observation, random_policy


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    config = ReferenceVLAConfig.tiny()
    stats = NormalizationStats(np.zeros(8), np.ones(8), np.zeros(8), np.full(8, 0.5))
    return {key: str(random_policy(config, seed=i, stats=stats).save_pretrained(root / key))
            for i, key in enumerate(("base", "task_ft", "co_ft"))}


def test_default_rows_are_the_papers():
    names = [v.name for v in default_variants()]
    assert names[:3] == ["base", "task-FT", "co-FT"]
    assert "RETAIN co-FT a=0.50" in names and "RETAIN task-FT a=0.25" in names
    language = [v for v in default_variants() if v.group_alpha]
    assert language and all(v.alphas() == {"default": 1.0, "language": 0.5} for v in language)


def test_conditions_cover_id_each_ood_family_and_the_generalist_suite():
    cells = conditions("push_red_to_purple")
    columns = {c.column for c in cells}
    assert {"id", "generalist", "position", "appearance", "viewpoint", "distractors"} <= columns
    assert all(c.variation == "id" for c in cells if c.column == "generalist")


def test_unknown_names_are_refused():
    with pytest.raises(ConfigError, match="unknown task"):
        conditions("push_red_to_purpel")
    with pytest.raises(ConfigError, match="unknown variation"):
        conditions("pick_red", ood=("lighting",))


def test_variants_swap_the_serving_weights(tiny_models):
    cfg = EvalConfig(**tiny_models, target="pick_red", out="unused")
    policies = VariantPolicies(cfg)
    obs = example_observation(policies.policy.spec)
    out = {v: policies.activate(Variant(v, *args)).predict(obs).actions for v, args in {
        "base": (), "ft": ("task_ft",), "merge0": ("task_ft", 0.0), "merge1": ("task_ft", 1.0),
        "half": ("task_ft", 0.5)}.items()}
    np.testing.assert_allclose(out["merge0"], out["base"], atol=1e-5)
    np.testing.assert_allclose(out["merge1"], out["ft"], atol=1e-5)
    assert not np.array_equal(out["half"], out["base"])


def test_rollout_executes_each_chunk_as_the_node_does(tiny_models):
    """Issue 15: one trajectory per chunk from the node's ChunkExecutor, at least `execute_steps` periods long (the
    acceleration limit may stretch it), accepted; stream mode: `execute_steps` one-period steps per chunk."""
    from retain_ros.evaluate.sim_rollout import plan_to_trajectory, rollout
    from retain_ros.policy.reference_policy import ReferencePolicy
    from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig
    from retain_ros.sim.env import EnvConfig, TabletopEnv

    policy = ReferencePolicy.from_pretrained(tiny_models["task_ft"])
    with TabletopEnv("pick_red", "id", EnvConfig(image_size=16, max_steps=12)) as env:
        record = rollout(policy, env, seed=1000, execute_steps=3)
        assert record["steps"] == 12 and 1 <= record["queries"] <= 4 and record["rejected"] == 0
        streamed = rollout(policy, env, seed=1000, execute_steps=3, execution="stream")
        assert streamed["steps"] == 12 and streamed["queries"] == 4 and streamed["rejected"] == 0
        obs = env.reset(1000)
        chunk = policy.predict(example_observation(policy.spec))
        q = obs["joint_positions"]
        plan = ChunkExecutor(ExecutorConfig(execute_steps=3)).plan(chunk.actions, chunk.dt_s, chunk.space.kind, 7,
                                                                   q, q, 0, 0)
        trajectory = plan_to_trajectory(plan, chunk.space.joint_names)
        env.command_trajectory(trajectory)  # the simulated controller accepts what the node would publish
        assert plan.actions_executed == 3 and len(trajectory.points) == 3 + plan.braking_tail
        assert trajectory.points[2].time_from_start_s >= 3 / 15 - 1e-9
        np.testing.assert_allclose(env.controller.sample(env.physics.time_s + 1.0)[0], plan.positions[-1])


def test_a_chunk_closes_the_simulated_gripper_at_the_action_that_closes_it(tiny_models):
    """Each executed action's gripper position is commanded when that action begins, as in the node."""
    from retain_ros.evaluate.sim_rollout import _execute
    from retain_ros.policy.reference_policy import ReferencePolicy
    from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig
    from retain_ros.sim.env import EnvConfig, TabletopEnv

    policy = ReferencePolicy.from_pretrained(tiny_models["task_ft"])
    chunk = policy.predict(example_observation(policy.spec))
    actions = np.zeros((10, 8))
    actions[5:, 7] = 1.0  # hold still; the 6th action closes
    with TabletopEnv("pick_red", "id", EnvConfig(image_size=16, max_steps=50)) as env:
        widths = []
        tick = env.tick
        env.tick = lambda: (widths.append(env.physics.gripper_width()), tick())[1]
        obs = env.reset(1000)
        period_ns = round(env.config.physics.control_dt_s * 1e9)
        _, refused = _execute(ChunkExecutor(ExecutorConfig(execute_steps=8)), chunk, actions,
                              obs["joint_positions"], env, period_ns)
    assert not refused and len(widths) >= 8
    open_width = widths[0]
    assert all(w == pytest.approx(open_width, abs=1e-3) for w in widths[:6])  # open until the 6th action has begun
    assert widths[-1] < open_width - 0.01  # closing before the chunk ends, not only when the next chunk starts


def test_same_seeds_for_every_variant(tiny_models):
    cfg = EvalConfig(**tiny_models, target="pick_red", out="unused", episodes=3, generalist=("pick_blue",))
    seeds = {}
    for variant, cell, cell_seeds in jobs_of(cfg):
        seeds.setdefault((cell.task, cell.variation), set()).add(tuple(cell_seeds))
    assert all(len(s) == 1 for s in seeds.values())


def test_wilson_interval_and_summary():
    low, high = wilson_interval(5, 10)
    assert low < 0.5 < high and 0 <= low and high <= 1
    assert wilson_interval(0, 4)[0] == 0.0
    records = [{"variant": "a", "column": "id", "success": True}, {"variant": "a", "column": "position",
                                                                   "success": False}]
    table = summarise(records, [Variant("a")], ["id", "generalist", "position"])
    assert table["a"]["id"]["rate"] == 1.0 and table["a"]["ood"]["n"] == 1 and table["a"]["generalist"]["n"] == 0


@pytest.mark.parametrize("kwargs, word", [({"episodes": 0}, "episodes"), ({"image_size": 4}, "image_size"),
                                          ({"variants": [Variant("x", "task_ft", 1.5)]}, "outside")])
def test_bad_settings_are_refused(tiny_models, kwargs, word):
    with pytest.raises(ConfigError, match=word):
        EvalConfig(**tiny_models, target="pick_red", out="o", **kwargs)


@pytest.mark.slow
def test_cli_runs_the_comparison_and_writes_the_report(tiny_models, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["sim", "--base", tiny_models["base"], "--task-ft", tiny_models["task_ft"], "--co-ft",
            tiny_models["co_ft"], "--target", "pick_red", "--alpha", "0.5", "--episodes", "1",
            "--generalist-episodes", "1", "--ood", "position", "--generalist", "pick_blue", "--image-size", "16",
            "--out", str(out)]
    assert retain_eval(argv + ["--max-steps", "12"]) == 0, capsys.readouterr().err
    names = [v.name for v in default_variants((0.5,))]
    # no terminal here, so no progress bar: progress comes as lines instead
    assert f"evaluate: {3 * len(names)}/{3 * len(names)} episodes" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert list(report["table"]) == names
    assert len(report["episodes"]) == len(names) * 3
    assert all(e["seed"] == 1000 and e["steps"] <= 12 for e in report["episodes"])
    assert "| RETAIN co-FT a=0.50 |" in (out / "report.md").read_text()
    assert (out / "alpha_sweep.png").stat().st_size > 1000


def test_cli_bad_checkpoint_exits_2(tmp_path, capsys):
    assert retain_eval(["sim", "--base", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "not found" in capsys.readouterr().err


def test_the_routed_row_serves_each_task_at_its_instructions_recipe(tiny_models):
    from retain_ros.evaluate.sim_eval import routed_variant
    from retain_ros.sim.tasks import SUITE

    routed = routed_variant(["pick up the red .*=0.9", "pick .*=vision:1,language:0.5,action:0.9"])
    assert routed.name == "routed task-FT" and routed.finetuned == "task_ft"
    red, blue = SUITE.get("pick_red").instruction, SUITE.get("pick_blue").instruction
    assert routed.alphas_for(red) == {"default": 0.9}
    assert routed.alphas_for(blue) == {"default": 0.0, "vision": 1.0, "language": 0.5, "action": 0.9}
    assert routed.alphas_for("stack the blue cube on the green cube") == {"default": 0.0}  # no match: the base
    cfg = EvalConfig(**tiny_models, target="pick_red", out="unused")
    policies = VariantPolicies(cfg)
    obs = example_observation(policies.policy.spec)
    served = policies.activate(routed, red).predict(obs).actions
    np.testing.assert_allclose(served, policies.activate(Variant("m", "task_ft", 0.9)).predict(obs).actions)
    other = policies.activate(routed, "put the red cube on the purple plate").predict(obs).actions
    np.testing.assert_allclose(other, policies.activate(Variant("base")).predict(obs).actions, atol=1e-5)
    for items, word in ((["pick=0.9,0"], "2 alphas for 1 finetuned"), (["pick=x"], "not an alpha"), ([], "at least")):
        with pytest.raises(ConfigError, match=word):
            routed_variant(items)


def test_rows_select_by_name_and_a_selection_of_nothing_lists_the_rows():
    from retain_ros.evaluate.sim_eval import select_rows

    assert [v.name for v in select_rows(default_variants((0.5,)), "^(base|task-FT)$")] == ["base", "task-FT"]
    with pytest.raises(ConfigError, match="selects no row; the rows are: base, task-FT"):
        select_rows(default_variants((0.5,)), "nothing")
    with pytest.raises(ConfigError, match="not a regular expression"):
        select_rows(default_variants((0.5,)), "(")


@pytest.mark.slow
def test_runs_of_different_rows_combine_into_one_report_and_mismatches_are_refused(tiny_models, tmp_path, capsys):
    common = ["sim", "--base", tiny_models["base"], "--task-ft", tiny_models["task_ft"], "--co-ft",
              tiny_models["co_ft"], "--target", "pick_red", "--alpha", "0.5", "--episodes", "1",
              "--generalist-episodes", "1", "--ood", "position", "--generalist", "pick_blue", "--image-size", "16",
              "--max-steps", "6", "-q", "--instruction-alphas", "pick up the red .*=0.5"]
    runs = {"a": "^(base|task-FT)$", "b": "^routed", "c": "^base$", "d": "^routed", "e": "^base$"}
    for name, rows in runs.items():
        extra = {"c": ["--seed", "1001"], "d": ["--task-ft", tiny_models["co_ft"]],
                 "e": ["--task-ft", str(tmp_path / "not_trained_yet")]}.get(name, [])
        assert retain_eval(common + ["--rows", rows, "--out", str(tmp_path / name)] + extra) == 0
    capsys.readouterr()
    assert retain_eval(["combine", str(tmp_path / "a"), str(tmp_path / "b" / "report.json"),
                        "--out", str(tmp_path / "all")]) == 0
    report = json.loads((tmp_path / "all" / "report.json").read_text())
    assert list(report["table"]) == ["base", "task-FT", "routed task-FT"]
    assert len(report["episodes"]) == 9 and report["config"]["variants"][2]["routes"] == ["pick up the red .*=0.5"]
    assert "| routed task-FT |" in (tmp_path / "all" / "report.md").read_text()
    # the combined report's rows compare episode by episode (3 each: target id and position, one generalist task)
    assert retain_eval(["paired", f"{tmp_path / 'all'}#base", f"{tmp_path / 'a'}#task-FT"]) == 0
    table = capsys.readouterr().out
    assert "| id | 1 |" in table and "| position | 1 |" in table and "| generalist | 1 |" in table
    # another seed is another experiment; a row in two runs is ambiguous
    assert retain_eval(["combine", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "x")]) == 2
    assert "seed=1001" in capsys.readouterr().err
    assert retain_eval(["combine", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "x")]) == 2
    assert "row 'base' is in both" in capsys.readouterr().err
    # other finetuned weights behind the same row names: refused; a base-only run ignores --task-ft
    assert retain_eval(["combine", str(tmp_path / "a"), str(tmp_path / "d"), "--out", str(tmp_path / "x")]) == 2
    assert "ran its task_ft rows with" in capsys.readouterr().err
    assert retain_eval(["combine", str(tmp_path / "b"), str(tmp_path / "e"), "--out", str(tmp_path / "be")]) == 0
    assert json.loads((tmp_path / "be" / "report.json").read_text())["config"]["task_ft"] == tiny_models["task_ft"]
    capsys.readouterr()
    assert retain_eval(["combine", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.fixture(scope="module")
def skill2_models(tiny_models, tmp_path_factory):
    """A second skill's checkpoints: one finetuned from the first merge, one from the base (random stand-ins)."""
    root = tmp_path_factory.mktemp("skill2")
    config = ReferenceVLAConfig.tiny()
    stats = NormalizationStats(np.zeros(8), np.ones(8), np.zeros(8), np.full(8, 0.5))
    return dict(tiny_models, **{key: str(random_policy(config, seed=i, stats=stats).save_pretrained(root / key))
                                for i, key in ((3, "task_ft2"), (4, "task_ft2_single"))})


def test_the_two_skill_row_serves_the_sequential_merge(skill2_models):
    from retain_ros.evaluate.sim_eval import skill2_variants
    from retain_ros.policy.reference_policy import ReferencePolicy

    rows = {v.name: v for v in skill2_variants((0.8, 0.6), single=True)}
    assert list(rows) == ["task-FT 2", "RETAIN 2 skills a=0.80,0.60", "task-FT 2 (from base)",
                          "RETAIN task-FT 2 a=0.60"]
    cfg = EvalConfig(**skill2_models, target="pick_red", target2="pick_green", out="unused",
                     variants=list(rows.values()))
    policies = VariantPolicies(cfg)
    obs = example_observation(policies.policy.spec)
    theta = {k: ReferencePolicy.from_pretrained(skill2_models[k]).state_dict()
             for k in ("base", "task_ft", "task_ft2", "task_ft2_single")}
    # paper Eq. 4: theta_1 = 0.2 theta_pre + 0.8 theta_ft1, theta_2 = 0.4 theta_1 + 0.6 theta_ft2
    expected = {name: (0.4 * (0.2 * theta["base"][name].double() + 0.8 * theta["task_ft"][name].double())
                       + 0.6 * theta["task_ft2"][name].double()).float() for name in theta["base"]}
    served = policies.activate(rows["RETAIN 2 skills a=0.80,0.60"]).predict(obs).actions
    reference = ReferencePolicy.from_pretrained(skill2_models["base"])
    reference.load_merged(expected)
    np.testing.assert_allclose(served, reference.predict(obs).actions, atol=1e-5)
    single = {name: (0.4 * theta["base"][name].double() + 0.6 * theta["task_ft2_single"][name].double()).float()
              for name in theta["base"]}
    reference.load_merged(single)
    np.testing.assert_allclose(policies.activate(rows["RETAIN task-FT 2 a=0.60"]).predict(obs).actions,
                               reference.predict(obs).actions, atol=1e-5)
    assert [c.column for c in conditions("pick_red", (), ("pick_blue",), "pick_green")] == \
        ["id", "target2", "generalist"]


def test_the_co_ft_recipe_chains_the_second_skill_onto_the_co_ft_merge(skill2_models):
    from retain_ros.evaluate.sim_eval import skill2_variants
    from retain_ros.policy.reference_policy import ReferencePolicy

    rows = {v.name: v for v in skill2_variants((0.8, 0.6), single=True, recipe="co_ft")}
    assert list(rows) == ["co-FT 2", "RETAIN co-FT 2 skills a=0.80,0.60", "co-FT 2 (from base)",
                          "RETAIN co-FT 2 a=0.60"]
    policies = VariantPolicies(EvalConfig(**skill2_models, target="pick_red", target2="pick_green", out="unused",
                                          variants=list(rows.values())))
    obs = example_observation(policies.policy.spec)
    theta = {k: ReferencePolicy.from_pretrained(skill2_models[k]).state_dict() for k in ("base", "co_ft", "task_ft2")}
    expected = {name: (0.4 * (0.2 * theta["base"][name].double() + 0.8 * theta["co_ft"][name].double())
                       + 0.6 * theta["task_ft2"][name].double()).float() for name in theta["base"]}
    reference = ReferencePolicy.from_pretrained(skill2_models["base"])
    reference.load_merged(expected)
    np.testing.assert_allclose(policies.activate(rows["RETAIN co-FT 2 skills a=0.80,0.60"]).predict(obs).actions,
                               reference.predict(obs).actions, atol=1e-5)
    with pytest.raises(ConfigError, match="skill recipe 'co-ft' is unknown; use task_ft or co_ft"):
        skill2_variants((0.8, 0.6), recipe="co-ft")


def test_a_group_can_have_its_own_second_skill_alpha_in_both_merges(skill2_models, tmp_path, capsys):
    from retain_ros.evaluate.sim_eval import skill2_variants
    from retain_ros.policy.reference_policy import ReferencePolicy

    rows = {v.name: v for v in skill2_variants((0.8, 0.6), single=True, recipe="co_ft",
                                               group_alpha={"language": 1.0})}
    assert list(rows)[1::2] == ["RETAIN co-FT 2 skills a=0.80,0.60 language=1.00",
                                "RETAIN co-FT 2 a=0.60 language=1.00"]
    policies = VariantPolicies(EvalConfig(**skill2_models, target="pick_red", target2="pick_green", out="unused",
                                          variants=list(rows.values())))
    obs = example_observation(policies.policy.spec)
    theta = {k: ReferencePolicy.from_pretrained(skill2_models[k]).state_dict()
             for k in ("base", "co_ft", "task_ft2", "task_ft2_single")}
    language = {name for name in theta["base"] if name.startswith("language_backbone.")}
    assert language and language != set(theta["base"])
    # Eq. 4 per group: the language backbone takes the second skill at 1, every other group at 0.6
    chained = {name: theta["task_ft2"][name] if name in language else
               (0.4 * (0.2 * theta["base"][name].double() + 0.8 * theta["co_ft"][name].double())
                + 0.6 * theta["task_ft2"][name].double()).float() for name in theta["base"]}
    single = {name: theta["task_ft2_single"][name] if name in language else
              (0.4 * theta["base"][name].double() + 0.6 * theta["task_ft2_single"][name].double()).float()
              for name in theta["base"]}
    reference = ReferencePolicy.from_pretrained(skill2_models["base"])
    for row, expected in (("RETAIN co-FT 2 skills a=0.80,0.60 language=1.00", chained),
                          ("RETAIN co-FT 2 a=0.60 language=1.00", single)):
        reference.load_merged(expected)
        np.testing.assert_allclose(policies.activate(rows[row]).predict(obs).actions,
                                   reference.predict(obs).actions, atol=1e-5)
    argv = ["sim", "--base", skill2_models["base"], "--task-ft2-single", skill2_models["task_ft2_single"],
            "--target2", "pick_green", "--out", str(tmp_path / "o"), "-q"]
    assert retain_eval(argv + ["--skill2-group-alpha", "lang=1"]) == 2
    assert "unknown group 'lang' for the second skill's alpha; the groups are: vision, language, action" in \
        capsys.readouterr().err
    assert retain_eval(argv + ["--skill2-group-alpha", "language=1,0.5"]) == 2
    assert "--skill2-group-alpha language: give one value" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="3 alphas of group 'language' for 2 finetuned checkpoints"):
        EvalConfig(**skill2_models, target="pick_red", target2="pick_green", out="o",
                   variants=[Variant("two", "co_ft+task_ft2", (0.5, 0.5), (("language", (1.0, 1.0, 1.0)),))])


def test_second_skill_settings_that_cannot_run_are_refused(skill2_models, tmp_path, capsys):
    with pytest.raises(ConfigError, match="give --target2"):
        EvalConfig(**skill2_models, target="pick_red", out="o")
    models = {k: v for k, v in skill2_models.items() if k != "task_ft2_single"}
    with pytest.raises(ConfigError, match="needs the task_ft2_single checkpoint; give --task-ft2-single DIR"):
        EvalConfig(**models, target="pick_red", target2="pick_green", out="o",
                   variants=[Variant("RETAIN task-FT 2 a=0.60", "task_ft2_single", 0.6)])
    with pytest.raises(ConfigError, match="needs their alphas"):
        EvalConfig(**models, target="pick_red", target2="pick_green", out="o",
                   variants=[Variant("two", "task_ft+task_ft2")])
    with pytest.raises(ConfigError, match="3 alphas for 2 finetuned"):
        EvalConfig(**models, target="pick_red", target2="pick_green", out="o",
                   variants=[Variant("two", "task_ft+task_ft2", (0.5, 0.5, 0.5))])
    argv = ["sim", "--base", skill2_models["base"], "--task-ft2", skill2_models["task_ft2"], "--out",
            str(tmp_path / "o"), "-q"]
    assert retain_eval(argv) == 2
    assert "give --target2" in capsys.readouterr().err
    assert retain_eval(argv + ["--target2", "pick_green", "--skill-alphas", "0.9"]) == 2
    assert "--skill-alphas '0.9' needs two values" in capsys.readouterr().err


def test_the_single_skill_rows_stand_without_the_chained_checkpoint(skill2_models, tmp_path, capsys):
    from retain_ros.evaluate.sim_eval import skill2_variants

    assert [v.name for v in skill2_variants((0.8, 0.6), single=True, chained=False)] == \
        ["task-FT 2 (from base)", "RETAIN task-FT 2 a=0.60"]
    argv = ["sim", "--base", skill2_models["base"], "--task-ft2-single", skill2_models["task_ft2_single"],
            "--target2", "pick_green", "--skill-alphas", "0.8,0.6", "--rows", "no such row", "--out",
            str(tmp_path / "o"), "-q"]
    assert retain_eval(argv) == 2
    rows = capsys.readouterr().err.split("the rows are: ")[1].strip().split(", ")
    assert rows[-2:] == ["task-FT 2 (from base)", "RETAIN task-FT 2 a=0.60"] and "task-FT 2" not in rows


@pytest.mark.slow
def test_two_skill_rows_run_end_to_end_and_combine_only_with_the_same_second_task(skill2_models, tmp_path, capsys):
    common = ["sim", *[a for k in ("base", "task_ft", "co_ft", "task_ft2", "task_ft2_single")
                       for a in (f"--{k.replace('_', '-')}", skill2_models[k])],
              "--target", "pick_red", "--target2", "pick_green", "--alpha", "0.5", "--skill-alphas", "0.8,0.6",
              "--episodes", "1", "--generalist-episodes", "1", "--ood", "position", "--generalist", "pick_blue",
              "--image-size", "16", "--max-steps", "6", "-q"]
    assert retain_eval(common + ["--rows", "^base$", "--out", str(tmp_path / "a")]) == 0
    assert retain_eval(common + ["--rows", "2", "--out", str(tmp_path / "b")]) == 0
    assert retain_eval(common + ["--skill2-group-alpha", "action=1", "--rows", "action", "--out",
                                 str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert retain_eval(["combine", *(str(tmp_path / r) for r in "abc"), "--out", str(tmp_path / "all")]) == 0
    report = json.loads((tmp_path / "all" / "report.json").read_text())
    assert list(report["table"]) == ["base", "task-FT 2", "RETAIN 2 skills a=0.80,0.60", "task-FT 2 (from base)",
                                     "RETAIN task-FT 2 a=0.60", "RETAIN 2 skills a=0.80,0.60 action=1.00",
                                     "RETAIN task-FT 2 a=0.60 action=1.00"]
    assert report["config"]["variants"][5]["group_alpha"] == [["action", [0.8, 1.0]]]
    # every row on both targets and the generalist suite; the second target is not pooled into OOD
    assert all(row["target2"]["n"] == 1 and row["ood"]["n"] == 1 and row["generalist"]["n"] == 1
               for row in report["table"].values())
    assert {e["task"] for e in report["episodes"] if e["column"] == "target2"} == {"pick_green"}
    assert report["config"]["variants"][2]["alpha"] == [0.8, 0.6]
    md = (tmp_path / "all" / "report.md").read_text()
    assert "Target 2 `pick_green`" in md and "| RETAIN 2 skills a=0.80,0.60 |" in md
    other = common[:common.index("--target2") + 1] + ["pick_blue"] + common[common.index("--target2") + 2:]
    assert retain_eval(other + ["--rows", "^base$", "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert retain_eval(["combine", str(tmp_path / "c"), str(tmp_path / "b"), "--out", str(tmp_path / "x")]) == 2
    assert "target2=" in capsys.readouterr().err
    # the co-FT recipe: its rows run end to end from the command line
    assert retain_eval(common + ["--skill-recipe", "co_ft", "--rows", "co-FT 2", "--out", str(tmp_path / "d")]) == 0
    assert list(json.loads((tmp_path / "d" / "report.json").read_text())["table"]) == \
        ["co-FT 2", "RETAIN co-FT 2 skills a=0.80,0.60", "co-FT 2 (from base)", "RETAIN co-FT 2 a=0.60"]


@pytest.mark.slow
def test_steered_rows_choose_the_best_sample_record_rollouts_and_combine_by_steering(tiny_models, tmp_path, capsys):
    from retain_ros.policy.interface import PolicySpec, load_policy
    from retain_ros.steering.rollouts import load_rollout
    from retain_ros.steering.synthetic import first_joint_value

    spec = load_policy(tiny_models["base"]).spec
    value = first_joint_value(spec).save_pretrained(tmp_path / "value")  # Q = the first action's joint-1 number
    other = first_joint_value(spec).save_pretrained(tmp_path / "value2")
    common = ["sim", "--base", tiny_models["base"], "--task-ft", tiny_models["task_ft"], "--co-ft",
              tiny_models["co_ft"], "--target", "pick_red", "--alpha", "0.5", "--episodes", "1",
              "--generalist-episodes", "1", "--ood", "position", "--generalist", "pick_blue", "--image-size", "16",
              "--max-steps", "6", "-q", "--steering", "value", "--steering-samples", "3", "--steering-noise", "1"]
    assert retain_eval(common + ["--rows", "^base$", "--out", str(tmp_path / "a"), "--steering-checkpoint",
                                 str(tmp_path / "not_trained_yet")]) == 0  # an unsteered run needs no value function
    assert retain_eval(common + ["--rows", r"^base \+ V-GPS$", "--steering-checkpoint", str(value),
                                 "--record", str(tmp_path / "rollouts"), "--out", str(tmp_path / "b")]) == 0
    assert retain_eval(common + ["--rows", r"^RETAIN task-FT a=0.50 \+ V-GPS$", "--steering-checkpoint", str(other),
                                 "--out", str(tmp_path / "c")]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert list(report["table"]) == ["base + V-GPS"] and len(report["episodes"]) == 3
    assert all("value" in e and "value_spread" in e for e in report["episodes"])
    files = sorted((tmp_path / "rollouts").glob("*.npz"))
    assert len(files) == 3
    for path in files:  # every executed chunk was the sample of highest Q
        episode = load_rollout(path)
        assert episode.candidates.shape[1:] == (3, spec.horizon, 8) and episode.row == "base + V-GPS"
        np.testing.assert_array_equal(episode.chosen, episode.candidates[:, :, 0, 0].argmax(axis=1))
    capsys.readouterr()
    assert retain_eval(["combine", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")]) == 0
    assert list(json.loads((tmp_path / "ab" / "report.json").read_text())["table"]) == ["base", "base + V-GPS"]
    assert retain_eval(["combine", str(tmp_path / "b"), str(tmp_path / "c"), "--out", str(tmp_path / "x")]) == 2
    assert "same steering settings" in capsys.readouterr().err
    wrong = first_joint_value(PolicySpec(("front",), (16, 16))).save_pretrained(tmp_path / "wrong")
    assert retain_eval(common + ["--rows", r"^base \+ V-GPS$", "--steering-checkpoint", str(wrong), "--out",
                                 str(tmp_path / "w")]) == 2
    assert "missing ['front']" in capsys.readouterr().err
