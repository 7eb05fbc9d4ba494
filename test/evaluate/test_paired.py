"""`retain-eval paired`: episode-by-episode comparison of two rows with the exact McNemar test."""

from __future__ import annotations

import json

import pytest

from retain_ros.evaluate.cli import main as retain_eval
from retain_ros.evaluate.paired import mcnemar_exact


def write_report(folder, rows: dict[str, dict[tuple[str, str, int], bool]]):
    """A report.json as `retain-eval sim` writes it: the rows' settings and every episode."""
    folder.mkdir(parents=True)
    episodes = [{"variant": row, "column": column, "task": task, "seed": seed, "success": success}
                for row, outcomes in rows.items() for (column, task, seed), success in outcomes.items()]
    config = {"variants": [{"name": row} for row in rows]}
    (folder / "report.json").write_text(json.dumps({"config": config, "episodes": episodes}))
    return folder


def outcomes(column: str, task: str, successes: list[bool], first_seed: int = 7000):
    return {(column, task, first_seed + i): s for i, s in enumerate(successes)}


@pytest.mark.parametrize("won, lost, p", [(0, 0, 1.0), (1, 8, 20 / 512), (5, 5, 1.0), (0, 6, 2 / 64)])
def test_exact_mcnemar(won, lost, p):
    assert mcnemar_exact(won, lost) == pytest.approx(p)
    assert mcnemar_exact(lost, won) == pytest.approx(p)


def test_counts_each_column_and_the_pooled_ood_on_shared_episodes(tmp_path, capsys):
    a = {**outcomes("id", "push", [True, True, False, False]), **outcomes("viewpoint", "push", [False] * 4),
         **outcomes("appearance", "push", [True, False, False, False]), **outcomes("generalist", "pick", [True])}
    b = {**outcomes("id", "push", [True, False, True, True]),
         **outcomes("viewpoint", "push", [True, True, False, False]),
         **outcomes("appearance", "push", [True, False, False, False]),
         **outcomes("generalist", "pick", [False, True], first_seed=6999)}  # seed 6999 ran only in B: left out
    write_report(tmp_path / "one", {"task-FT": a, "RETAIN a=0.90": b})
    write_report(tmp_path / "other", {"co-FT": b})
    assert retain_eval(["paired", f"{tmp_path / 'one'}#task-FT", f"{tmp_path / 'one'}#RETAIN a=0.90"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| id | 4 | 2 | 3 | 2 | 1 | 1 |" in lines
    assert "| viewpoint | 4 | 0 | 2 | 2 | 0 | 0.5 |" in lines
    assert "| generalist | 1 | 1 | 1 | 0 | 0 | 1 |" in lines
    assert "| ood | 8 | 1 | 3 | 2 | 0 | 0.5 |" in lines
    # a one-row report needs no row name; a report.json path works as its folder does
    assert retain_eval(["paired", f"{tmp_path / 'one'}#RETAIN a=0.90", str(tmp_path / "other" / "report.json")]) == 0
    assert "| id | 4 | 3 | 3 | 0 | 0 | 1 |" in capsys.readouterr().out


def test_bad_rows_and_unrelated_runs_are_refused(tmp_path, capsys):
    write_report(tmp_path / "two", {"base": outcomes("id", "push", [True]), "task-FT": outcomes("id", "push", [False])})
    write_report(tmp_path / "later", {"base": outcomes("id", "push", [True], first_seed=8000)})
    assert retain_eval(["paired", str(tmp_path / "two"), str(tmp_path / "later")]) == 2
    assert "holds 2 rows (base, task-FT); name one as" in capsys.readouterr().err
    assert retain_eval(["paired", f"{tmp_path / 'two'}#co-FT", str(tmp_path / "later")]) == 2
    assert "has no row 'co-FT'; its rows: base, task-FT" in capsys.readouterr().err
    assert retain_eval(["paired", f"{tmp_path / 'two'}#base", str(tmp_path / "later")]) == 2
    assert "share no episode" in capsys.readouterr().err
    assert retain_eval(["paired", str(tmp_path / "missing"), str(tmp_path / "later")]) == 2
    assert "cannot read" in capsys.readouterr().err
