"""Leaderboard aggregation on hand-made records, published numbers, Markdown/LaTeX golden files, the CLI;
records that cannot be used are skipped with a warning naming them; a missing directory is an error."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from forgetbench.benchmarks import leaderboard, tables
from forgetbench.leaderboard import main as leaderboard_cli
from tests.leaderboard_records import add_broken_records, make_sweep, write_raw, write_record

GOLDEN = Path(__file__).parent / "golden"
HEADER = ["forgetbench -m strategy=naive,replay seed=0,1,2"]
REFERENCE = """stream,scenario,model,strategy,metric,value,reported,conditions,citation,protocol
split_mnist,class,mlp,naive,acc,0.199,19.9 (± 0.1),"stream.n_experiences=2 model.hidden_sizes=[400,400]",Paper A (2020),"2 tasks, MLP 400-400"
split_mnist,class,mlp,replay,acc,0.95,95.0 (± 0.1),stream.n_experiences=5,Paper B (2021),"5 tasks"
"""


@pytest.fixture
def board(tmp_path) -> leaderboard.Leaderboard:
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "papers.csv").write_text(REFERENCE)
    return leaderboard.build([make_sweep(tmp_path / "sweep")], tmp_path / "reference")


def row(board, strategy):
    return board.table.set_index("strategy").loc[strategy]


def test_mean_and_t_interval_by_hand(board):
    naive, replay = row(board, "naive"), row(board, "replay")
    # naive ACC 0.5, 0.6, 0.7: half-width t_{.975,2} * 0.1 / sqrt(3)
    assert (naive["n"], naive["acc_mean"], naive["acc_ci"]) == (3, pytest.approx(0.6), pytest.approx(0.248414, abs=1e-6))
    # replay ACC 0.9, 0.8: half-width t_{.975,1} * 0.0707107 / sqrt(2) = 12.706205 * 0.05
    assert (replay["n"], replay["acc_mean"], replay["acc_ci"]) == (2, pytest.approx(0.85), pytest.approx(0.635310, abs=1e-6))
    assert naive["bwt_mean"] == pytest.approx(-0.8)  # R[2,0] - R[1,0] = -1.0, -0.8, -0.6


def test_newest_record_of_a_config_counts_once_and_failed_runs_are_left_out(board):
    assert row(board, "naive")["time_mean"] == pytest.approx(12.0)  # seed 0 re-run: 13 s replaces 10 s
    assert len(board.failed) == 1 and board.failed[0].endswith("5__replay__s2")
    assert board.warnings == []


def test_intransigence_from_joint_runs_read_even_if_they_finished_last(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")  # the naive runs' records have no intransigence (NaN)
    # joint run, seed 0 only; written last, as in a sweep that lists joint last
    write_record(sweep, 8, "joint", 0, [[0.1, 0.1], [None, None], [0.9, 0.95]], seconds=30.0)
    runs = leaderboard.build([sweep]).runs.set_index(["strategy", "seed"])
    # naive seed 0 learned R[1,0] = 1.0, R[2,1] = 1.0: I = ((0.9 - 1.0) + (0.95 - 1.0)) / 2
    assert runs.loc[("naive", 0), "intransigence"] == pytest.approx(-0.075)
    assert pd.isna(runs.loc[("naive", 1), "intransigence"])  # no joint run with seed 1: missing, not faked


def test_upper_bounds_are_shown_but_never_bold(tmp_path):
    """An upper bound is what its strategy declared (``strategy_info.upper_bound``), whatever its name;
    records from before that field existed fall back to the names joint and cumulative."""
    sweep = make_sweep(tmp_path / "sweep")
    write_record(sweep, 8, "joint", 0, [[0.1, 0.1], [None, None], [0.99, 0.99]], seconds=1.0)  # no strategy_info
    write_record(sweep, 9, "oracle", 0, [[0.1, 0.1], [0.9, 0.9], [0.98, 0.98]], seconds=1.0, upper_bound=True)
    write_record(sweep, 10, "cumulative", 0, [[0.1, 0.1], [0.9, 0.9], [0.97, 0.97]], seconds=1.0, upper_bound=False)
    board = leaderboard.build([sweep])
    marks = tables.best(board.table).set_index(board.table["strategy"])
    assert marks.loc["cumulative", "acc"]  # declared a contender: ranked, and its 0.97 beats replay's 0.85
    assert not marks.loc["joint", "acc"] and not marks.loc["oracle", "acc"]  # higher, but upper bounds
    assert marks.loc["cumulative", "time"] and not marks.loc["joint", "time"] and not marks.loc["oracle", "time"]


def test_memory_columns_come_from_the_records(board, tmp_path):
    header, rows = tables.cells(board, bold=str)
    shown = {r[3]: dict(zip(header, r)) for r in rows}
    assert (shown["replay"]["Stored samples"], shown["replay"]["Memory (MB)"]) == ("100", "0.08")  # 100 x (784 + 8) B
    assert (shown["naive"]["Stored samples"], shown["naive"]["Memory (MB)"]) == ("0", "0.00")
    sweep = make_sweep(tmp_path / "legacy")
    write_record(sweep, 7, "lwf", 0, [[0.1, 0.1], [1.0, 0.0], [0.5, 1.0]], 1.0)  # no memory recorded
    header, rows = tables.cells(leaderboard.build([sweep]), bold=str)
    assert {r[3]: r[5:7] for r in rows}["lwf"] == ["–", "–"]  # not declared: shown as missing, never as 0


def test_mixed_settings_warn(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    write_record(sweep, 7, "naive", 3, [[0.1, 0.1], [1.0, 0.0], [0.0, 1.0]], 10.0, epochs=5)
    board = leaderboard.build([sweep])
    assert len(board.warnings) == 1 and "split_mnist/class/mlp/naive" in board.warnings[0] and "epochs" in board.warnings[0]


def test_published_numbers_only_where_protocol_conditions_match(board):
    assert row(board, "naive")["published_acc"] == pytest.approx(0.199)
    assert pd.isna(row(board, "replay")["published_acc"])  # Paper B ran 5 tasks, ours 2
    assert board.references["citation"].tolist() == ["Paper A (2020)"]


def test_protocol_matches():
    config = {"stream": {"n_experiences": 5}, "model": {"hidden_sizes": [400, 400]}}
    assert leaderboard.protocol_matches("stream.n_experiences=5 model.hidden_sizes=[400,400]", [config])
    assert leaderboard.protocol_matches("", [config])
    assert not leaderboard.protocol_matches("model.hidden_sizes=[1000,1000]", [config])
    assert not leaderboard.protocol_matches("epochs=1", [config])  # a key the run lacks never matches


@pytest.mark.parametrize("suffix, render", [("md", tables.to_markdown), ("tex", tables.to_latex)])
def test_render_matches_golden(board, suffix, render):
    text = render(board, HEADER)
    golden = GOLDEN / f"leaderboard.{suffix}"
    if os.environ.get("FORGETBENCH_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden} differs; after checking the change, rerun with FORGETBENCH_UPDATE_GOLDEN=1"


def test_cli_writes_every_format_with_the_commands_on_top(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    out = tmp_path / "board" / "leaderboard"
    leaderboard_cli([str(sweep), "--out", str(out), "--references", str(tmp_path / "none")])
    command = f"forgetbench-leaderboard {sweep} --out {out} --references {tmp_path / 'none'}"
    assert (out.parent / "leaderboard.md").read_text().startswith(f"```sh\n{command}\n```")
    assert (out.parent / "leaderboard.tex").read_text().startswith(f"% {command}\n")
    assert command in (out.parent / "leaderboard.html").read_text()
    csv = pd.read_csv(out.parent / "leaderboard.csv", comment="#")
    assert csv.set_index("strategy").loc["replay", "acc_mean"] == pytest.approx(0.85)
    assert "| naive |" in capsys.readouterr().out


def test_failed_run_redone_later_is_not_reported(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    write_record(sweep, 8, "replay", 2, [[0.1, 0.1], [1.0, 0.0], [0.7, 1.0]], 20.0)  # the failed config, now ok
    board = leaderboard.build([sweep])
    assert board.failed == [] and row(board, "replay")["n"] == 3


def test_unusable_records_are_skipped_with_a_warning_naming_each(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    broken = add_broken_records(sweep)
    interrupted = write_record(sweep, 30, "naive", 9, None, 0.0, status="interrupted")  # Ctrl-C
    board = leaderboard.build([sweep])
    assert board.warnings == [f"skipped {path}: {why}" for path, why in sorted(broken.items())]
    assert (row(board, "naive")["n"], row(board, "replay")["n"]) == (3, 2)  # the good records, as without them
    assert row(board, "naive")["acc_mean"] == pytest.approx(0.6)
    assert board.failed == [str(interrupted), str(sweep / "5__replay__s2")]  # reported as failed, not as skipped


def test_cli_warns_on_stderr_for_each_skipped_record_and_goes_on(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    broken = add_broken_records(sweep)
    out = tmp_path / "board" / "leaderboard"
    leaderboard_cli([str(sweep), "--out", str(out), "--references", str(tmp_path / "none")])
    captured = capsys.readouterr()
    warned = [line for line in captured.err.splitlines() if line.startswith("warning: skipped")]
    assert warned == [f"warning: skipped {path}: {why}" for path, why in sorted(broken.items())]
    assert "| naive | 3 |" in captured.out and (out.parent / "leaderboard.md").exists()


def test_no_usable_record_is_an_error_after_the_warnings(tmp_path, capsys):
    path = write_raw(tmp_path / "sweep", "0__cut", '{"status": "ok", "metr')
    with pytest.raises(leaderboard.NoRunsError) as raised:
        leaderboard.build([tmp_path / "sweep"])
    assert raised.value.warnings == [f"skipped {path}: unreadable JSON (Unterminated string starting at: line 1 "
                                     f"column 18 (char 17))"]
    with pytest.raises(SystemExit) as exited:
        leaderboard_cli([str(tmp_path / "sweep"), "--out", str(tmp_path / "board")])
    err = capsys.readouterr().err.splitlines()
    assert exited.value.code == 1 and err[0] == f"warning: {raised.value.warnings[0]}"
    assert err[1].startswith("forgetbench-leaderboard: error: no finished run records") and err[1].endswith("1 skipped")


def test_missing_directory_is_named(tmp_path, capsys):
    sweep, missing = make_sweep(tmp_path / "sweep"), tmp_path / "no_such_sweep"
    with pytest.raises(FileNotFoundError, match=f"{missing}: no such directory"):
        leaderboard.build([sweep, missing])
    with pytest.raises(SystemExit) as exited:
        leaderboard_cli([str(sweep), str(missing), "--out", str(tmp_path / "board")])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"forgetbench-leaderboard: error: {missing}: no such directory"
    assert not (tmp_path / "board.md").exists()  # nothing written from the directories that do exist


def test_console_script_names_a_missing_directory_without_a_traceback(tmp_path):
    script = Path(sys.executable).parent / "forgetbench-leaderboard"
    result = subprocess.run([str(script), "no_such_sweep"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == "forgetbench-leaderboard: error: no_such_sweep: no such directory"
    assert "Traceback" not in result.stderr
