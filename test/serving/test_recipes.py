"""`instruction_alphas`: PATTERN=SPEC items parsed, checked and matched (plain logic, no model)."""

from __future__ import annotations

import pytest

from retain_ros.control.params import check_change
from retain_ros.errors import ConfigError
from retain_ros.serving.recipes import DEFAULT_ROUTE, MergeRequest, RecipeBook, check_rules, parse_rule, parse_rules

TARGET = "push the red cube onto the purple plate"


@pytest.mark.parametrize("item, alpha, groups", [
    ("push the red .*=0.9", (0.9,), {}),
    ("push.*=0.9,0", (0.9, 0.0), {}),
    ("push.*=vision:1,language:0.5,action:0.9", None, {"vision": (1.0,), "language": (0.5,), "action": (0.9,)}),
    ("push.*=0.8, language:0.2/0", (0.8,), {"language": (0.2, 0.0)}),
    ("a=b=0.3", (0.3,), {}),  # the spec follows the last '='
])
def test_specs_parse_into_alphas_and_group_alphas(item, alpha, groups):
    rule = parse_rule(item)
    assert rule.item == item and rule.alpha == alpha and dict(rule.group_alpha) == groups


@pytest.mark.parametrize("item, words", [
    ("push the red cube", "is not PATTERN=SPEC"),
    ("=0.9", "is not PATTERN=SPEC"),
    ("push.*=", "is not PATTERN=SPEC"),
    ("push (red=0.9", "is not a regular expression"),
    ("push.*=1.5", "'1.5' is not an alpha in [0, 1]"),
    ("push.*=high", "'high' is not an alpha in [0, 1]"),
    ("push.*=nan", "'nan' is not an alpha in [0, 1]"),
    ("push.*=language:0.5,language:0.2", "given twice"),
    ("push.*=:0.5", "is empty or given twice"),
])
def test_a_bad_item_is_refused_with_one_line_naming_it(item, words):
    with pytest.raises(ConfigError, match="instruction_alphas item") as info:
        parse_rule(item)
    assert words in str(info.value) and item in str(info.value) and "\n" not in str(info.value)
    reason = check_change("instruction_alphas", ["ok.*=0.5", item])
    assert reason is not None and words in reason  # the on-set callback refuses it with the same line


def test_rules_are_checked_against_the_preset_groups_and_the_finetuned_checkpoints():
    rules = parse_rules(["push.*=0.9,0", "stack.*=gripper:0.5"])
    with pytest.raises(ConfigError, match="unknown group 'gripper'.*vision, language, action"):
        check_rules(rules, ("vision", "language", "action"), 2)
    with pytest.raises(ConfigError, match="2 alphas for 3 finetuned checkpoints"):
        check_rules(rules[:1], ("vision", "language", "action"), 3)
    check_rules(rules[:1], ("vision", "language", "action"), 2)
    assert check_change("instruction_alphas", ["push.*=0.9,0"], groups=("vision",), num_finetuned=1) is not None
    assert check_change("instruction_alphas", ["push.*=0.9,0"], groups=("vision",), num_finetuned=2) is None
    assert check_change("instruction_alphas", [""]) is None  # the default: no rules


def test_the_first_rule_matching_the_whole_instruction_gives_the_recipe_and_others_get_the_alpha_parameters():
    default = MergeRequest("base", ("ft",), 0.5, {"action": 0.7}, epoch=3)
    book = RecipeBook(default, parse_rules(["push the red .*=0.9", "push.*=0.2", "stack.*=language:0.1", "put=1"]))
    target = book.route(TARGET)
    assert (target.route, target.alpha, target.group_alpha) == ("push the red .*", 0.9, {})
    assert target.files_key() == default.files_key()  # same checkpoints and reload epoch
    assert book.route("push the blue cube").route == "push.*"
    stack = book.route("stack the blue cube on the green one")
    assert (stack.alpha, stack.group_alpha) == (0.5, {"language": (0.1,)})  # no bare alpha: the alpha parameter
    for other in ("put the red cube on the plate", "please push the red cube", ""):  # 'put' matches only 'put'
        assert book.route(other) is default and book.route(other).route == DEFAULT_ROUTE
    assert target.describe() == "0.9" and default.describe() == "0.5,action:0.7"
    assert target.same_recipe(book.route(TARGET)) and not target.same_recipe(default)
