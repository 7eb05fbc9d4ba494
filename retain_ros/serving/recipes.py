"""Merge recipes: what the node's parameters ask for, and which recipe each instruction is served at (no torch).

`instruction_alphas` is a list of `PATTERN=SPEC` items; the first whose PATTERN (a Python regular expression) matches
the whole instruction gives its recipe, and an instruction that matches none gets the `alpha` / `alpha_*` parameters
(the 'default' route). SPEC is comma-separated:
- a bare number is the alpha of every group (`0.9`); several bare numbers are one alpha per finetuned checkpoint, in
  order (`0.9,0`: the first skill at 0.9, the second left out);
- `GROUP:VALUE` gives a group its own alpha (`vision:1,language:0.5,action:0.9`); VALUE may hold one alpha per
  finetuned checkpoint joined by `/` (`language:0.5/0`). Groups without a value take the spec's bare alpha, or the
  `alpha` parameter when the spec has none.
The route (the item's PATTERN, or 'default') names which rule a model serves: the control loop serves an instruction
only with a model built for its route (`RecipeBook.route`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from retain_ros.errors import ConfigError

DEFAULT_ROUTE = "default"
LAYOUT_AUTO = "auto"  # merge.live.AUTO_LAYOUT (that module imports torch)


@dataclass(frozen=True)
class MergeRequest:
    """What the node's parameters ask for.

    Attributes:
        base: pretrained checkpoint (resolved path).
        finetuned: finetuned checkpoints (resolved paths; several = sequential skills; none = serve the base).
        alpha: merge weight of every group without its own: one value, or one per finetuned checkpoint.
        group_alpha: group -> its own alpha (one value or one per finetuned checkpoint; groups left out use `alpha`).
        preset: parameter-group preset name or YAML path.
        reload: re-read the checkpoint files even if the paths did not change.
        layout: where the merge inputs live: 'auto', 'resident' or 'streamed' (`merge.live.plan_memory`).
        route: the instruction rule this request serves (`DEFAULT_ROUTE` or an `instruction_alphas` pattern).
        epoch: bumped by the node's ~/reload, so that every request after it reads the files again once.
    """

    base: str
    finetuned: tuple[str, ...] = ()
    alpha: float | tuple[float, ...] = 0.0
    group_alpha: Mapping[str, float | tuple[float, ...]] = field(default_factory=dict)
    preset: str = "auto"
    reload: bool = False
    layout: str = LAYOUT_AUTO
    route: str = DEFAULT_ROUTE
    epoch: int = 0

    def files_key(self) -> tuple:
        """What decides whether the files must be read again."""
        return (self.base, self.finetuned, self.preset, self.layout, self.epoch)

    def same_recipe(self, other: MergeRequest | None) -> bool:
        """Whether `other` asks for the same weights for the same route (a forced re-read aside)."""
        return other is not None and replace(self, reload=False) == replace(other, reload=False)

    def alpha_spec(self):
        """The merge weights as a `merge.maths.AlphaSpec`."""
        from retain_ros.merge.maths import AlphaSpec  # torch: only where a merge runs

        return AlphaSpec.uniform(self.alpha, **self.group_alpha)

    def describe(self) -> str:
        """The alphas as a user writes them (`0.9`, `0.9,0`, `0.5,language:0.2`)."""
        parts = [_numbers(self.alpha, ",")] + [f"{g}:{_numbers(v, '/')}" for g, v in sorted(self.group_alpha.items())]
        return ",".join(parts)


def _numbers(value: float | Sequence[float], sep: str) -> str:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return sep.join(f"{v:g}" for v in values)


@dataclass(frozen=True)
class InstructionRule:
    """One `instruction_alphas` item.

    Attributes:
        item: the item as written (`PATTERN=SPEC`).
        pattern: PATTERN, compiled; it must match the whole instruction.
        alpha: the bare alpha(s), or None (the `alpha` parameter).
        group_alpha: group -> its alpha(s).
    """

    item: str
    pattern: re.Pattern
    alpha: tuple[float, ...] | None
    group_alpha: Mapping[str, tuple[float, ...]]

    def matches(self, instruction: str) -> bool:
        """Whether the pattern matches the whole instruction."""
        return self.pattern.fullmatch(instruction) is not None


def _alpha(text: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"instruction_alphas item '{item}': '{text}' is not an alpha in [0, 1]. Fix: write "
                          "PATTERN=0.9, PATTERN=0.9,0 (one per finetuned checkpoint) or PATTERN=vision:1,language:0.5")
    return value


def parse_rule(item: str) -> InstructionRule:
    """One `PATTERN=SPEC` item (see the module docstring).

    Raises:
        ConfigError: no '=', an empty or invalid pattern, an empty spec, a value that is not an alpha in [0, 1], or a
            group given twice; the message names the item.
    """
    pattern_text, sep, spec = item.rpartition("=")
    if not sep or not pattern_text or not spec.strip():
        raise ConfigError(f"instruction_alphas item '{item}' is not PATTERN=SPEC. Fix: e.g. 'push the red .*=0.9' "
                          "(a regular expression matched against the whole instruction, then its alphas)")
    try:
        pattern = re.compile(pattern_text)
    except re.error as exc:
        raise ConfigError(f"instruction_alphas item '{item}': '{pattern_text}' is not a regular expression "
                          f"({exc}). Fix: escape special characters, e.g. '\\.' for a dot") from None
    bare: list[float] = []
    groups: dict[str, tuple[float, ...]] = {}
    for part in (p.strip() for p in spec.split(",")):
        group, colon, values = part.partition(":")
        if not colon:
            bare.append(_alpha(part, item))
            continue
        group = group.strip()
        if not group or group in groups:
            raise ConfigError(f"instruction_alphas item '{item}': group '{group}' is empty or given twice. Fix: "
                              "one GROUP:VALUE per group")
        groups[group] = tuple(_alpha(v.strip(), item) for v in values.split("/"))
    return InstructionRule(item, pattern, tuple(bare) or None, groups)


def parse_rules(items: Sequence[str]) -> tuple[InstructionRule, ...]:
    """Every non-empty item, in order.

    Raises:
        ConfigError: the first bad item (`parse_rule`).
    """
    return tuple(parse_rule(item) for item in items if item.strip())


def check_rules(rules: Sequence[InstructionRule], groups: Sequence[str], num_finetuned: int) -> None:
    """Check the rules against the merge's groups and finetuned checkpoints (when those are known).

    Raises:
        ConfigError: an unknown group, or a number of alphas that fits neither one nor every finetuned checkpoint.
    """
    for rule in rules:
        unknown = [g for g in rule.group_alpha if groups and g not in groups]
        if unknown:
            raise ConfigError(f"instruction_alphas item '{rule.item}': unknown group '{unknown[0]}'; this preset's "
                              f"groups are: {', '.join(groups)}")
        for values in [rule.alpha or (0.0,), *rule.group_alpha.values()]:
            if len(values) not in (1, num_finetuned):
                raise ConfigError(f"instruction_alphas item '{rule.item}': {len(values)} alphas for {num_finetuned} "
                                  "finetuned checkpoints. Fix: one alpha, or one per finetuned checkpoint")


@dataclass(frozen=True)
class RecipeBook:
    """The default request (from the `alpha` / `alpha_*` parameters) and the instruction rules.

    Attributes:
        default: the request of an instruction no rule matches.
        rules: the `instruction_alphas` rules, first match wins.
    """

    default: MergeRequest
    rules: tuple[InstructionRule, ...] = ()

    def rule_for(self, instruction: str) -> InstructionRule | None:
        """The first rule matching the whole instruction, or None."""
        return next((rule for rule in self.rules if rule.matches(instruction)), None)

    def route(self, instruction: str) -> MergeRequest:
        """The request that serves `instruction`."""
        rule = self.rule_for(instruction)
        if rule is None:
            return self.default
        alpha = rule.alpha if rule.alpha is not None else self.default.alpha
        if isinstance(alpha, tuple) and len(alpha) == 1:
            alpha = alpha[0]
        return replace(self.default, alpha=alpha, group_alpha=dict(rule.group_alpha), route=rule.pattern.pattern,
                       reload=False)
