"""Paired comparison of two rows of `retain-eval sim` on the episodes both ran (same task, column and seed).

Two rows scored on the same seeds differ episode by episode; counting the episodes one row won and the other lost
and testing them with the exact McNemar test tells rows apart that overlapping Wilson intervals cannot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retain_ros.errors import ConfigError
from retain_ros.evaluate.sim_report import is_ood_column, read_report

OOD_POOLED = "ood"


@dataclass(frozen=True)
class PairedCount:
    """One column of the comparison: successes of each row on the shared episodes, and the discordant pairs."""

    column: str
    n: int
    successes_a: int
    successes_b: int
    b_won: int  # B succeeded where A failed
    b_lost: int  # A succeeded where B failed

    @property
    def p_value(self) -> float:
        """Two-sided exact McNemar p: the discordant pairs against a fair coin."""
        return mcnemar_exact(self.b_won, self.b_lost)


def mcnemar_exact(won: int, lost: int) -> float:
    """Two-sided exact McNemar p-value of `won` against `lost` discordant pairs (1 when there are none)."""
    n = won + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(won, lost) + 1)) / 2 ** n
    return min(1.0, 2.0 * tail)


def row_episodes(report: str | Path, row: str | None) -> tuple[str, dict[tuple[str, str, int], bool]]:
    """(row name, {(column, task, seed): success}) of one row of a report; `row` may be omitted for a one-row report.

    Raises:
        ConfigError: an unreadable report, or a row it does not hold (the message lists the rows it has).
    """
    path, content = read_report(report)
    rows = [v["name"] for v in content["config"]["variants"]]
    if row is None:
        if len(rows) != 1:
            raise ConfigError(f"{path} holds {len(rows)} rows ({', '.join(rows)}); name one as {path}#ROW")
        row = rows[0]
    if row not in rows:
        raise ConfigError(f"{path} has no row '{row}'; its rows: {', '.join(rows)}")
    episodes = {(e["column"], e["task"], int(e["seed"])): bool(e["success"])
                for e in content["episodes"] if e["variant"] == row}
    return row, episodes


def paired_counts(a: dict[tuple[str, str, int], bool], b: dict[tuple[str, str, int], bool]) -> list[PairedCount]:
    """Per column on the shared episodes, in the order first seen, with the OOD families also pooled as 'ood'.

    The pooled columns are the ones the report's own 'ood' column pools (`is_ood_column`).

    Raises:
        ConfigError: the rows share no episode (different seeds, tasks or columns).
    """
    shared = [key for key in a if key in b]
    if not shared:
        raise ConfigError("the two rows share no episode (same column, task and seed); compare runs with the same "
                          "--seed, --episodes and tasks")
    columns = list(dict.fromkeys(key[0] for key in shared))
    groups = [(c, {c}) for c in columns]
    pooled = {c for c in columns if is_ood_column(c)}
    if len(pooled) > 1:
        groups.append((OOD_POOLED, pooled))
    counts = []
    for name, members in groups:
        keys = [k for k in shared if k[0] in members]
        counts.append(PairedCount(name, len(keys), sum(a[k] for k in keys), sum(b[k] for k in keys),
                                  sum(b[k] and not a[k] for k in keys), sum(a[k] and not b[k] for k in keys)))
    return counts


def split_spec(spec: str) -> tuple[str, str | None]:
    """'path#row' -> (path, row); a spec without '#' names a report (or its folder) of one row."""
    path, sep, row = spec.partition("#")
    return path, (row if sep else None)


def compare(spec_a: str, spec_b: str) -> tuple[str, str, list[PairedCount]]:
    """(row A, row B, counts) of two rows given as 'report#row' (or a one-row report)."""
    path_a, row_a = split_spec(spec_a)
    path_b, row_b = split_spec(spec_b)
    name_a, a = row_episodes(path_a, row_a)
    name_b, b = row_episodes(path_b, row_b)
    return f"{name_a} ({path_a})", f"{name_b} ({path_b})", paired_counts(a, b)


def markdown_table(name_a: str, name_b: str, counts: Sequence[PairedCount]) -> str:
    """The comparison as a markdown table, one line per column."""
    lines = [f"A: {name_a}", f"B: {name_b}", "",
             "| column | episodes | A | B | B won | B lost | exact McNemar p |", "|---|---|---|---|---|---|---|"]
    for c in counts:
        lines.append(f"| {c.column} | {c.n} | {c.successes_a} | {c.successes_b} | {c.b_won} | {c.b_lost} | "
                     f"{c.p_value:.2g} |")
    return "\n".join(lines)
