"""Leaderboard aggregation on hand-made records, published numbers, Markdown/LaTeX golden files, the CLI;
records that cannot be used are skipped with a warning naming them; a missing directory is an error;
the notes, commands and references in every format; where the files go; the evaluation split; published
numbers verified or not; the reproduction table (gap, inside our CI, the gaps notes); paired comparisons."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from forgetbench.benchmarks import html_report, leaderboard, plots, reproduction, tables
from forgetbench.leaderboard import main as leaderboard_cli, quote, without_notes
from tests.leaderboard_records import NAIVE, REPLAY, add_broken_records, make_sweep, write_raw, write_record

GOLDEN = Path(__file__).parent / "golden"
HEADER = ["forgetbench -m strategy=naive,replay seed=0,1,2"]
REMARKS = ["One epoch per experience, unlike the paper's protocol."]
REFERENCE = """stream,scenario,model,strategy,metric,value,reported,conditions,citation,protocol,verified
split_mnist,class,mlp,naive,acc,0.199,19.9 (± 0.1),"stream.n_experiences=2 model.hidden_sizes=[400,400]",Paper A (2020),"2 tasks, MLP 400-400",unverified: read in a survey's table
split_mnist,class,mlp,replay,acc,0.95,95.0 (± 0.1),stream.n_experiences=5,Paper B (2021),"5 tasks",paper
"""


@pytest.fixture
def board(tmp_path) -> leaderboard.Leaderboard:
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "papers.csv").write_text(REFERENCE)
    return leaderboard.build([make_sweep(tmp_path / "sweep")], tmp_path / "reference")


def row(board, strategy):
    return board.table.set_index("strategy").loc[strategy]


def shown(board) -> dict[str, dict[str, str]]:
    """The displayed cells: strategy -> column title -> text."""
    header, rows = tables.cells(board, bold=str)
    return {r[header.index("Strategy")]: dict(zip(header, r)) for r in rows}


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
    cells = shown(board)
    assert (cells["replay"]["Stored samples"], cells["replay"]["Memory (MB)"]) == ("100", "0.08")  # 100 x (784 + 8) B
    assert (cells["naive"]["Stored samples"], cells["naive"]["Memory (MB)"]) == ("0", "0.00")
    sweep = make_sweep(tmp_path / "legacy")
    write_record(sweep, 7, "lwf", 0, [[0.1, 0.1], [1.0, 0.0], [0.5, 1.0]], 1.0)  # no memory recorded
    lwf = shown(leaderboard.build([sweep]))["lwf"]
    assert (lwf["Stored samples"], lwf["Memory (MB)"]) == ("–", "–")  # not declared: shown as missing, never as 0


def test_wake_and_sleep_time_columns_only_where_a_run_slept(board, tmp_path):
    assert "Sleep (s)" not in shown(board)["naive"]  # nobody slept: the usual columns
    assert "sleep_time_mean" not in pd.read_csv(pd.io.common.StringIO(tables.to_csv(board)), comment="#")
    sweep = make_sweep(tmp_path / "sleepy")
    for seed, (train, asleep) in enumerate([(10.0, 4.0), (12.0, 6.0)]):
        write_record(sweep, 7 + seed, "sleep_cls", seed, REPLAY[seed], 20.0,
                     timings={"total_seconds": 20.0, "train_seconds": train, "sleep_seconds": asleep})
    cells = shown(leaderboard.build([sweep]))
    assert (cells["sleep_cls"]["Wake (s)"], cells["sleep_cls"]["Sleep (s)"]) == ("6.0 ± 0.0", "5.0 ± 12.7")
    assert cells["naive"]["Sleep (s)"] == "–"  # never slept: missing, not 0

def test_by_sweep_keeps_each_directory_s_protocol_apart(tmp_path):
    one, two = make_sweep(tmp_path / "paper_protocol"), tmp_path / "common_protocol"
    for seed in (0, 1):
        write_record(two, seed, "naive", seed, [[0.1, 0.1], [1.0, 0.0], [0.0, 1.0]], 1.0, epochs=5)
    merged = leaderboard.build([one, two])  # naive of both directories averaged, with a warning
    assert row(merged, "naive")["n"] == 5 and any("epochs" in w for w in merged.warnings)
    assert "Sweep" not in shown(merged)["naive"]
    apart = leaderboard.build([one, two], by_sweep=True)
    assert not apart.warnings
    naive = apart.table[apart.table["strategy"] == "naive"].set_index("sweep")
    assert naive["n"].to_dict() == {"common_protocol": 2, "paper_protocol": 3}
    assert naive.loc["common_protocol", "acc_mean"] == pytest.approx(0.5)  # (0.0 + 1.0) / 2
    assert naive.loc["paper_protocol", "acc_mean"] == pytest.approx(0.6)
    header, rows = tables.cells(apart, bold=str)
    assert header[:4] == ["Stream", "Scenario", "Split", "Sweep"] and {r[3] for r in rows} == {"common_protocol",
                                                                                              "paper_protocol"}
    pairs = reproduction.paired_comparisons(apart.runs)  # replay vs naive within the paper's sweep only
    assert pairs[["sweep", "a", "b", "n"]].values.tolist() == [["paper_protocol", "replay", "naive", 2]]


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
def test_render_matches_golden(board, tmp_path, suffix, render):
    text = render(board, HEADER, REMARKS).replace(str(tmp_path), "<tmp>")  # the failed run's path
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


# --- where the files go -------------------------------------------------------------------------------

def test_files_go_beside_the_one_input_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = make_sweep(tmp_path / "results" / "runs" / "x")
    leaderboard_cli([str(sweep), "--references", "none"])
    assert sorted(p.name for p in sweep.glob("leaderboard.*")) == [f"leaderboard.{f}"
                                                                    for f in ("csv", "html", "md", "tex")]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["runs"]  # results/leaderboard.* untouched


def test_several_inputs_need_out(tmp_path, capsys):
    a, b = make_sweep(tmp_path / "a"), make_sweep(tmp_path / "b")
    with pytest.raises(SystemExit) as exited:
        leaderboard_cli([str(a), str(b)])
    assert exited.value.code == 2 and "--out" in capsys.readouterr().err.splitlines()[-1]
    assert not list(tmp_path.rglob("leaderboard.*"))


@pytest.mark.parametrize("out, written", [("boards/", "boards/leaderboard"), ("existing", "existing/leaderboard"),
                                          ("boards/mine", "boards/mine")])
def test_out_is_a_folder_or_a_path_without_suffix(tmp_path, out, written):
    sweep = make_sweep(tmp_path / "sweep")
    (tmp_path / "existing").mkdir()
    leaderboard_cli([str(sweep), "--out", f"{tmp_path}/{out}", "--formats", "md,csv"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.md")) == [f"{written}.md"]


# --- notes: what the terminal says, every format says ----------------------------------------------------

@pytest.fixture
def noted(tmp_path) -> leaderboard.Leaderboard:
    """A board with a group that mixes settings, a failed run and a skipped record."""
    sweep = make_sweep(tmp_path / "sweep")
    write_record(sweep, 7, "naive", 3, [[0.1, 0.1], [1.0, 0.0], [0.0, 1.0]], 10.0, epochs=5)
    write_raw(sweep, "8__empty", "")
    return leaderboard.build([sweep])


def test_notes_are_the_mixed_settings_the_failed_runs_and_the_skipped_records(noted):
    mixed, skipped, failed = noted.notes()
    assert mixed.startswith("split_mnist/class/mlp/naive (test): runs differ in epochs")
    assert skipped.endswith("8__empty/record.json: empty file")
    assert failed == f"left out 1 failed run(s): {noted.failed[0]}"


def test_every_format_carries_the_notes(noted, tmp_path):
    notes = noted.notes()
    md = tables.to_markdown(noted)
    assert md.split("\n\nNotes:\n\n")[1].splitlines()[:3] == [f"- {n}" for n in notes]  # after the table
    tex = tables.to_latex(noted).splitlines()
    after = tex[tex.index(r"\end{tabular}") + 1:]
    assert all(line.startswith("%") for line in after) and [f"% - {n}" for n in notes] == after[1:4]
    path = tmp_path / "board.csv"
    path.write_text(tables.to_csv(noted))
    assert [f"# - {n}" for n in notes] == path.read_text().splitlines()[1:4]
    assert len(pd.read_csv(path, comment="#")) == 2
    page = html_report.to_html(noted)
    box = page.split("</table>\n", 1)[1]
    assert box.startswith("<div class='notes'>") and all(f"<li>{n}</li>" in box for n in notes)  # right under it


def test_the_terminal_warns_with_the_same_notes(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    write_raw(sweep, "8__empty", "")
    leaderboard_cli([str(sweep), "--references", str(tmp_path / "none")])
    board = leaderboard.build([sweep])
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("warning: ")] == [f"warning: {n}" for n in board.notes()]


def test_a_multi_line_note_stays_comments():
    assert tables.comments("%", ["one", "two\nthree", ""]) == ["% one", "% two", "% three", "%"]


# --- commands: from the records -------------------------------------------------------------------------

def test_commands_from_the_records_each_once_in_order(tmp_path):
    sweep = tmp_path / "x"
    first, extended = ("forgetbench -m strategy=naive,ewc seed=0 sweep_name=x",
                       "forgetbench -m strategy=naive,ewc seed=0,1 sweep_name=x")
    for num, (strategy, seed, sweep_command) in enumerate([("naive", 0, first), ("ewc", 0, first),
                                                           ("naive", 1, extended), ("ewc", 1, extended)]):
        write_record(sweep, num, strategy, seed, NAIVE[0], 1.0, started_at=f"2026-01-02T00:00:0{num}",
                     command=f"forgetbench strategy={strategy} seed={seed} sweep_name=x", sweep_command=sweep_command)
    single = "forgetbench strategy=replay seed=0"  # a single run: no sweep command
    write_record(tmp_path / "2026-01-02", 9, "replay", 0, REPLAY[0], 1.0, started_at="2026-01-02T00:00:09",
                 command=single, sweep_command=None)
    old = make_sweep(tmp_path / "old")  # records without commands: their sweep's multirun.yaml
    (old / "multirun.yaml").write_text("hydra:\n  overrides:\n    hydra: [hydra.mode=MULTIRUN]\n"
                                       "    task: ['strategy=naive,replay', 'seed=0,1,2']\n")
    board = leaderboard.build([sweep, tmp_path / "2026-01-02", old])
    assert board.commands == ["forgetbench -m strategy=naive,replay seed=0,1,2", first, extended, single]


def test_notes_are_prose_and_the_command_is_not_mangled(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    note = "Each strategy under its paper's protocol."
    leaderboard_cli([str(sweep), "--out", f"{tmp_path}/board/", "--note", note, "--references", "none"])
    command = f"forgetbench-leaderboard {sweep} --out {tmp_path}/board/ --references none"
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert md.startswith(f"```sh\n{command}\n```\n\n{note}\n\n| Stream |")
    page = (tmp_path / "board" / "leaderboard.html").read_text()
    assert f"<pre>{command}</pre>\n<p>Each strategy under its paper&#x27;s protocol.</p>" in page
    assert "'\"'\"'" not in page and "'\"'\"'" not in md
    assert quote("it's") == '"it\'s"' and quote("a b") == "'a b'" and quote("$it's") == "'$it'\"'\"'s'"
    assert without_notes(["d", "--note", "a", "--note=b", "--note", "--note", "--out", "x"]) == ["d", "--out", "x"]


# --- references -----------------------------------------------------------------------------------------

def test_one_entry_per_citation(tmp_path):
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "papers.csv").write_text(
        REFERENCE.splitlines()[0] + "\n"
        + "split_mnist,class,mlp,naive,acc,0.2,20,,Paper C,one head,paper\n"
        + "split_mnist,class,mlp,naive,bwt,-0.9,-90,,Paper D,D's protocol,authors_files\n"
        + "split_mnist,class,mlp,replay,acc,0.9,90,,Paper C,one head; replay buffer 100,paper\n")
    board = leaderboard.build([make_sweep(tmp_path / "sweep")], tmp_path / "reference")
    assert board.references["marker"].tolist() == ["1a", "1b", "2"]  # one number per paper, in order of use
    cells = shown(board)
    assert (cells["naive"]["Published ACC"], cells["naive"]["Published BWT"]) == ("0.200 [1a]", "-0.900 [2]")
    assert cells["replay"]["Published ACC"] == "0.900 [1b]"
    md, tex, csv = (render(board) for render in (tables.to_markdown, tables.to_latex, tables.to_csv))
    assert md.endswith("- [1] Paper C\n  - [1a] Protocol: one head\n  - [1b] Protocol: one head; replay buffer 100\n"
                       "- [2] Paper D. Protocol: D's protocol\n")
    assert tex.endswith("% [1] Paper C\n%   [1a] Protocol: one head\n%   [1b] Protocol: one head; replay buffer 100\n"
                        "% [2] Paper D. Protocol: D's protocol\n")
    assert csv.count("Paper C") == 1 and "# [2] Paper D. Protocol: D's protocol\n" in csv
    assert html_report.to_html(board).count("Paper C") == 1


# --- metrics and splits ---------------------------------------------------------------------------------

def test_average_incremental_accuracy_column(board, tmp_path):
    # naive: A_1 = R[1,0] = 1; A_2 = (R[2,0] + R[2,1]) / 2 = 0.5, 0.6, 0.7 -> 0.75, 0.8, 0.85
    assert row(board, "naive")["avg_inc_acc_mean"] == pytest.approx(0.8)
    assert shown(board)["naive"]["Avg inc. ACC"] == "0.800 ± 0.124"
    sweep = tmp_path / "old"
    path = write_record(sweep, 0, "naive", 0, NAIVE[0], 1.0) / "record.json"
    record = json.loads(path.read_text())
    del record["metrics"]["avg_inc_acc"]  # a record from before the metric
    path.write_text(json.dumps(record))
    assert shown(leaderboard.build([sweep]))["naive"]["Avg inc. ACC"] == "–"


def test_validation_numbers_are_apart_and_never_next_to_published_ones(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    for seed in range(2):
        write_record(sweep, 10 + seed, "naive", seed, [[0.1, 0.1], [1.0, 0.0], [0.9, 1.0]], 1.0,
                     eval_split="validation", epochs=2)
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "papers.csv").write_text(REFERENCE)
    board = leaderboard.build([sweep], tmp_path / "reference")
    header, rows = tables.cells(board, bold=lambda t: f"*{t}")
    rows = [dict(zip(header, r)) for r in rows]
    assert [(r["Split"], r["Strategy"], r["n"]) for r in rows] == [
        ("test", "naive", "3"), ("test", "replay", "2"), ("validation", "naive", "2")]
    assert rows[0]["Published ACC"] == "0.199† [1]" and rows[2]["Published ACC"] == ""
    assert reproduction.reproduction(board)[["eval_split", "strategy"]].values.tolist() == [["test", "naive"]]
    assert rows[2]["ACC"] == "0.950 ± 0.000"  # alone in its block: not compared with the test rows, not bold
    assert board.warnings == []  # the validation runs' epochs=2 does not mix with the test runs' epochs=1


def test_offline_heatmap_is_its_one_row_with_readable_labels():
    matrix = [[0.1, 0.1], [None, None], [0.9, 0.95]]  # joint training: no rows between init and the end
    fig = plots.heatmap(matrix, "joint (mlp)", offline=True)
    ax, bar = fig.axes  # the heatmap and its colour bar
    assert ax.images[0].get_array().shape == (1, 2) and [t.get_text() for t in ax.get_yticklabels()] == ["all"]
    assert "offline" in ax.get_title()
    labels = [t for t in ax.texts]
    assert [t.get_text() for t in labels] == ["0.90", "0.95"]
    assert min(t.get_fontsize() for t in labels) * html_report.DPI / 72 >= 10  # px on the page


# --- published numbers: verified or not -------------------------------------------------------------------

def references_board(tmp_path, text: str, sweep=None, gaps: str | None = None) -> leaderboard.Leaderboard:
    """The board of ``sweep`` (default :func:`make_sweep`) with one reference file holding ``text``."""
    folder = tmp_path / "reference"
    folder.mkdir(exist_ok=True)
    (folder / "papers.csv").write_text(text)
    if gaps is not None:
        (folder / leaderboard.GAPS_FILE).write_text(gaps)
    return leaderboard.build([sweep or make_sweep(tmp_path / "sweep")], folder)


HEAD = REFERENCE.splitlines()[0]


def test_unverified_numbers_carry_a_dagger_and_a_legend_in_every_format(board, tmp_path):
    assert shown(board)["naive"]["Published ACC"] == "0.199† [1]"
    legend = "† not verified in the paper or the authors' files ([1]): read in a survey's table"
    assert tables.to_markdown(board).endswith(f"\n- {legend}\n")
    assert tables.to_latex(board).endswith(f"\n% {legend}\n") and r"0.199\textdagger{} [1]" in tables.to_latex(board)
    csv = tables.to_csv(board)
    assert f"# {legend}\n" in csv
    path = tmp_path / "board.csv"
    path.write_text(csv)
    published = pd.read_csv(path, comment="#").set_index("strategy").loc["naive", "published_acc_verified"]
    assert published == "unverified: read in a survey's table"
    assert f"<li>{html_report.html.escape(legend)}</li>" in html_report.to_html(board)


def test_verified_numbers_carry_no_dagger(tmp_path):
    board = references_board(tmp_path, HEAD + "\nsplit_mnist,class,mlp,naive,acc,0.199,19.9,,Paper A,one head,paper\n"
                             "split_mnist,class,mlp,replay,acc,0.8,80,,Paper A,one head,authors_files\n")
    cells = shown(board)
    assert (cells["naive"]["Published ACC"], cells["replay"]["Published ACC"]) == ("0.199 [1]", "0.800 [1]")
    assert "†" not in tables.to_markdown(board) + tables.to_csv(board) + html_report.to_html(board)


def test_a_file_without_the_verified_column_counts_as_unverified(tmp_path):
    board = references_board(tmp_path, "stream,scenario,model,strategy,metric,value,reported,conditions,citation,"
                                       "protocol\nsplit_mnist,class,mlp,naive,acc,0.199,19.9,,Paper A,one head\n")
    assert shown(board)["naive"]["Published ACC"] == "0.199† [1]"
    assert board.published["verified"].tolist() == [leaderboard.NO_VERIFIED_COLUMN]
    assert tables.note_lines(board)[-1] == ("† not verified in the paper or the authors' files ([1]): "
                                            "no verified column")


def test_verified_must_say_where_the_number_was_read(tmp_path):
    with pytest.raises(ValueError, match=r"papers.csv: verified must be .* \(line 3: 'yes'\)"):
        references_board(tmp_path, HEAD + "\nsplit_mnist,class,mlp,naive,acc,0.2,20,,A,a,paper\n"
                                          "split_mnist,class,mlp,naive,acc,0.2,20,,A,a,yes\n")
    assert leaderboard.verified_entry(" unverified:  a blog post ") == "unverified: a blog post"
    assert leaderboard.verified_entry("unverified") == "unverified: no reason given"
    assert leaderboard.verified_entry("") == "unverified: verified left blank"


def test_the_table_shows_a_verified_number_first_the_reproduction_all(tmp_path):
    board = references_board(tmp_path, HEAD + "\nsplit_mnist,class,mlp,naive,acc,0.2,20,,Survey,table 1,unverified: "
                                              "a survey\nsplit_mnist,class,mlp,naive,acc,0.199,19.9,,Paper A,a,paper\n")
    assert shown(board)["naive"]["Published ACC"] == "0.199 [2]"
    assert reproduction.reproduction(board)[["published", "marker"]].values.tolist() == [[0.2, "1"], [0.199, "2"]]


# --- reproduction: ours next to the published numbers ------------------------------------------------------

PAPERS = HEAD + """
split_mnist,class,mlp,naive,acc,0.199,19.9 (± 0.1),stream.n_experiences=2,Paper A,2 tasks,unverified: a survey's table
split_mnist,class,mlp,naive,bwt,-0.79,-79.0,,Paper B,B's protocol,paper
split_mnist,class,mlp,replay,acc,0.5,50.0 (± 3.0),,Paper B,B's protocol,authors_files
split_mnist,class,mlp,replay,acc,0.95,95.0,stream.n_experiences=5,Paper C,5 tasks,paper
split_mnist,class,mlp,lwf,acc,0.7,70.0,,Paper B,B's protocol,paper
"""
GAPS = """stream,scenario,strategy,metric,note
split_mnist,class,replay,acc,"buffer of 100, theirs 500; tried 500: 0.86"
"""


@pytest.fixture
def repro(tmp_path) -> leaderboard.Leaderboard:
    sweep = make_sweep(tmp_path / "sweep")
    write_record(sweep, 7, "lwf", 0, [[0.1, 0.1], [1.0, 0.0], [0.5, 1.0]], 1.0)  # one seed: ACC 0.75, no interval
    return references_board(tmp_path, PAPERS, sweep, GAPS)


def test_reproduction_rows_by_hand(repro):
    rows = reproduction.reproduction(repro)
    assert rows[["strategy", "metric", "citation"]].values.tolist() == [  # by stream, scenario, strategy
        ["lwf", "acc", "Paper B"], ["naive", "acc", "Paper A"], ["naive", "bwt", "Paper B"],
        ["replay", "acc", "Paper B"]]
    lwf, naive_acc, naive_bwt, replay = (row for _, row in rows.iterrows())
    # naive ACC 0.5, 0.6, 0.7: 0.6 ± 0.248414; 0.199 lies 0.401 away: outside; gap 100 (0.6 - 0.199) = 40.1 points
    assert (naive_acc["n"], naive_acc["ours_mean"], naive_acc["ours_ci"]) == (3, pytest.approx(0.6),
                                                                             pytest.approx(0.248414, abs=1e-6))
    assert (naive_acc["gap"], naive_acc["inside_ci"]) == (pytest.approx(40.1), False)
    assert naive_acc["explanation"] == reproduction.UNEXPLAINED and naive_acc["verified"].startswith("unverified")
    # naive BWT -1.0, -0.8, -0.6: -0.8 ± 0.496828; -0.79: gap -1 point, inside, under 2 points: nothing to explain
    assert (naive_bwt["gap"], naive_bwt["inside_ci"], naive_bwt["explanation"]) == (pytest.approx(-1.0), True, "")
    # replay ACC 0.9, 0.8: 0.85 ± 0.635310 holds 0.5; gap 35 points, explained in gaps.csv
    assert (replay["gap"], replay["inside_ci"], replay["n"]) == (pytest.approx(35.0), True, 2)
    assert replay["explanation"] == "buffer of 100, theirs 500; tried 500: 0.86"
    # lwf: one seed, no interval: inside_ci unknown; gap 5 points, not explained
    assert (lwf["n"], lwf["gap"], lwf["inside_ci"], lwf["explanation"]) == (1, pytest.approx(5.0), None,
                                                                            reproduction.UNEXPLAINED)


def test_reproduction_uses_the_leaderboards_numbers(repro):
    rows = reproduction.reproduction(repro).set_index(["strategy", "metric"])
    table = repro.table.set_index("strategy")
    for (strategy, metric), row in rows.iterrows():
        assert (row["ours_mean"], row["ours_ci"]) == (pytest.approx(table.loc[strategy, f"{metric}_mean"], nan_ok=True),
                                                      pytest.approx(table.loc[strategy, f"{metric}_ci"], nan_ok=True))


def test_reproduction_markdown(repro, tmp_path):
    md = reproduction.reproduction_markdown(repro, HEADER, REMARKS).replace(str(tmp_path), "<tmp>")
    assert md.startswith(f"```sh\n{HEADER[0]}\n```\n\n{REMARKS[0]}\n\nOur runs next to every published number")
    assert ("| split_mnist | class | mlp | naive | ACC | 3 | 0.6000 ± 0.2484 | 0.1990† [2] | 19.9 (± 0.1) | +40.10 "
            "| no | no † | not yet explained |") in md
    assert ("| split_mnist | class | mlp | naive | BWT | 3 | -0.8000 ± 0.4968 | -0.7900 [1] | -79.0 | -1.00 | yes "
            "| paper |  |") in md
    assert "| +35.00 | yes | authors' files | buffer of 100, theirs 500; tried 500: 0.86 |" in md
    assert "| lwf | ACC | 1 | 0.7500 | 0.7000 [1] | 70.0 | +5.00 | – | paper | not yet explained |" in md
    assert md.endswith("- [1] Paper B. Protocol: B's protocol\n- [2] Paper A. Protocol: 2 tasks\n"  # in order of use
                       "- † not verified in the paper or the authors' files ([2]): a survey's table\n")
    assert "Notes:\n\n- left out 1 failed run(s): <tmp>/sweep/5__replay__s2" in md
    path = tmp_path / "reproduction.csv"
    path.write_text(reproduction.reproduction_csv(repro, HEADER, REMARKS))
    assert path.read_text().startswith(f"# {HEADER[0]}\n# {REMARKS[0]}\n")
    assert pd.read_csv(path, comment="#")["gap"].round(6).tolist() == [5.0, 40.1, -1.0, 35.0]


def test_reproduction_section_in_the_html_page(repro):
    page = html_report.to_html(repro)
    section = page.split("<h2>Reproduction: ours next to the published numbers</h2>")[1].split("<h2>")[0]
    assert section.count("<tr>") == 1 + 4 and "buffer of 100, theirs 500; tried 500: 0.86" in section
    assert "not verified in the paper or the authors&#x27; files ([2]): a survey&#x27;s table" in section


def test_reproduction_by_sweep_has_a_row_and_a_sweep_cell_per_directory(tmp_path):
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "papers.csv").write_text(REFERENCE)
    sweeps = [make_sweep(tmp_path / "paper_protocol"), make_sweep(tmp_path / "again")]
    header, cells = reproduction.reproduction_cells(reproduction.reproduction(
        leaderboard.build(sweeps, tmp_path / "reference", by_sweep=True)))
    assert header[:6] == ["Stream", "Scenario", "Sweep", "Model", "Strategy", "Metric"]
    assert [(r[2], r[4]) for r in cells] == [("again", "naive"), ("paper_protocol", "naive")]
    header, _ = reproduction.reproduction_cells(reproduction.reproduction(
        leaderboard.build(sweeps, tmp_path / "reference")))
    assert "Sweep" not in header


def test_no_matching_number_no_reproduction_rows(tmp_path):
    board = leaderboard.build([make_sweep(tmp_path / "sweep")])
    assert reproduction.reproduction(board).empty
    assert "No published number matches a test-split group of these runs." in reproduction.reproduction_markdown(board)
    assert "<h2>Reproduction" not in html_report.to_html(board)


def test_gap_notes_lookup(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("stream,scenario,strategy,metric,note\nsplit_mnist,class,ewc,,lambda on another scale\n"
                    "split_mnist,class,ewc,bwt, their BWT excludes the last task \n")
    notes = leaderboard.load_gap_notes(path)
    assert leaderboard.gap_note(notes, "split_mnist", "class", "ewc", "bwt") == "their BWT excludes the last task"
    assert leaderboard.gap_note(notes, "split_mnist", "class", "ewc", "acc") == "lambda on another scale"
    assert leaderboard.gap_note(notes, "split_mnist", "task", "ewc", "acc") is None
    path.write_text("stream,scenario,strategy,note\nsplit_mnist,class,ewc,one\n")  # no metric column: every metric
    assert leaderboard.load_gap_notes(path) == {("split_mnist", "class", "ewc", ""): "one"}
    path.write_text("stream,scenario,strategy,note\nsplit_mnist,class,ewc,one\nsplit_mnist,class,ewc,two\n")
    with pytest.raises(ValueError, match="line 3: split_mnist/class/ewc given twice"):
        leaderboard.load_gap_notes(path)
    path.write_text("stream,strategy,note\nsplit_mnist,ewc,one\n")
    with pytest.raises(ValueError, match=r"missing columns \['scenario'\]"):
        leaderboard.load_gap_notes(path)


def test_the_gaps_file_is_not_a_reference_file(repro):
    assert set(repro.published["citation"]) == {"Paper A", "Paper B"}  # gaps.csv read as notes, not numbers
    assert repro.gap_notes == {("split_mnist", "class", "replay", "acc"): "buffer of 100, theirs 500; tried 500: 0.86"}


# --- paired comparisons ----------------------------------------------------------------------------------

def pair(pairs: pd.DataFrame, a: str, b: str) -> pd.Series:
    """The row comparing a and b, whichever order it names them in."""
    found = pairs[((pairs["a"] == a) & (pairs["b"] == b)) | ((pairs["a"] == b) & (pairs["b"] == a))]
    assert len(found) == 1, found
    return found.iloc[0]


def test_paired_difference_by_hand(tmp_path):
    from scipy import stats

    runs = leaderboard.build([make_sweep(tmp_path / "sweep")]).runs
    row = pair(reproduction.paired_comparisons(runs), "naive", "replay")
    # seeds 0 and 1 (replay's seed 2 failed): replay 0.9, 0.8 - naive 0.5, 0.6 = 0.4, 0.2: mean 0.3, s_d = 0.141421,
    # se = 0.1, t = 3 on 1 df: half-width t_{0.975,1} * 0.1; p = 1 - 2 atan(3) / pi (df = 1: Cauchy)
    assert (row["a"], row["b"], row["n"], row["seeds"]) == ("replay", "naive", 2, "0 1")
    assert (row["mean"], row["ci"]) == (pytest.approx(0.3), pytest.approx(1.2706205, abs=1e-6))
    assert row["p"] == pytest.approx(1 - 2 * math.atan(3) / math.pi, abs=1e-9)
    assert row["p"] == pytest.approx(stats.ttest_rel([0.9, 0.8], [0.5, 0.6]).pvalue, abs=1e-12)
    assert (row["low"], row["high"]) == (pytest.approx(0.3 - 1.2706205, abs=1e-6), pytest.approx(0.3 + 1.2706205,
                                                                                                  abs=1e-6))
    assert row["note"] == "seeds without a pair left out: naive 2"


def test_a_beats_b_is_a_tested_statement(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    write_record(sweep, 8, "replay", 2, [[0.1, 0.1], [1.0, 0.0], [1.0, 1.0]], 20.0)  # the failed seed, redone: 1.0
    board = leaderboard.build([sweep])
    row = pair(reproduction.paired_comparisons(board.runs), "naive", "replay")
    # differences 0.4, 0.2, 0.3: mean 0.3 ± 4.302653 * 0.1 / sqrt(3); t = 5.196 on 2 df, p = 1 - t / sqrt(t^2 + 2)
    t = 0.3 / (0.1 / math.sqrt(3))
    assert (row["a"], row["b"], row["n"], row["note"]) == ("replay", "naive", 3, "")
    assert (row["mean"], row["ci"]) == (pytest.approx(0.3), pytest.approx(0.248414, abs=1e-6))
    assert row["p"] == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-9)
    assert row["low"] > 0 and row["p"] < 0.05  # replay beats naive on these seeds
    md = reproduction.pairs_markdown(board, reproduction.paired_comparisons(board.runs))
    assert "| split_mnist | class | test | mlp | replay | naive | 3 | +0.300 ± 0.248 | 0.035 | replay > naive |" in md


def test_pairs_without_common_seeds_or_protocol_are_skipped_with_a_note(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    for num, seed in ((10, 5), (11, 6)):
        write_record(sweep, num, "ewc", seed, NAIVE[0], 1.0)
    write_record(sweep, 12, "lwf", 0, NAIVE[0], 1.0, epochs=5)
    write_record(sweep, 13, "si", 1, NAIVE[1], 1.0)  # one pair with naive and replay: no interval, no p
    board = leaderboard.build([sweep])
    pairs = reproduction.paired_comparisons(board.runs)
    ewc = pair(pairs, "ewc", "naive")
    assert ewc["n"] == 0 and math.isnan(ewc["mean"]) and math.isnan(ewc["p"])
    assert ewc["note"] == "not compared: no seed in common (ewc: 5, 6; naive: 0, 1, 2)"
    assert pair(pairs, "lwf", "naive")["note"] == ("not compared: not run under one protocol "
                                                   "(their runs differ in epochs)")
    si = pair(pairs, "si", "naive")
    assert (si["n"], si["mean"], si["seeds"]) == (1, pytest.approx(0.0), "1")
    assert math.isnan(si["ci"]) and math.isnan(si["p"])
    md = reproduction.pairs_markdown(board, pairs)
    assert "| split_mnist | class | test | mlp | epochs=1 | naive | si | 1 | +0.000 | – | – |" in md  # lwf 5 epochs
    assert ("- split_mnist/class/test/mlp: ewc vs naive: not compared: no seed in common "
            "(ewc: 5, 6; naive: 0, 1, 2)") in md
    assert "| ewc |" not in md.split("Pairs not compared")[0]  # not in the table


def test_pairs_name_the_protocol_and_the_strategy_settings_that_tell_them_apart(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    for num, seed in ((10, 0), (11, 1)):  # naive and replay again, with 5 epochs: another protocol
        write_record(sweep, num, "naive", seed, NAIVE[seed], 1.0, epochs=5)
        write_record(sweep, num + 10, "replay", seed, REPLAY[1 - seed], 1.0, epochs=5)
    path = write_record(sweep, 30, "replay", 0, REPLAY[0], 1.0) / "record.json"  # replay with a bigger buffer
    record = json.loads(path.read_text())
    record["config"]["strategy"]["mem_size"] = 500
    path.write_text(json.dumps(record))
    pairs = reproduction.paired_comparisons(leaderboard.build([sweep]).runs)
    assert sorted(pairs["protocol"].unique()) == ["epochs=1", "epochs=5"]
    five = pairs[(pairs["protocol"] == "epochs=5") & (pairs["b"] == "naive")].iloc[0]
    assert (five["a"], five["n"], five["mean"]) == ("replay (strategy.mem_size=null)", 2, pytest.approx(0.3))
    assert five["ci"] == pytest.approx(0.0, abs=1e-12)  # 0.8 - 0.5 and 0.9 - 0.6: the same difference
    names = set(pairs["a"]) | set(pairs["b"])
    assert {"replay (strategy.mem_size=null)", "replay (strategy.mem_size=500)"} <= names  # two settings of replay
    big = pair(pairs, "naive", "replay (strategy.mem_size=500)")
    assert (big["protocol"], big["n"], big["mean"]) == ("epochs=1", 1, pytest.approx(0.4))


def test_pairs_of_validation_runs_stay_apart(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    write_record(sweep, 10, "naive", 0, NAIVE[0], 1.0, eval_split="validation")
    pairs = reproduction.paired_comparisons(leaderboard.build([sweep]).runs)
    assert pairs["eval_split"].tolist() == ["test"]


def test_cli_writes_the_reproduction_and_the_pairs(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "papers.csv").write_text(PAPERS)
    (tmp_path / "reference" / "gaps.csv").write_text(GAPS)
    out, target = tmp_path / "board" / "grid", tmp_path / "repro" / "reproduction.md"
    argv = [str(sweep), "--out", str(out), "--references", str(tmp_path / "reference"), "--reproduction", str(target),
            "--pairs"]
    leaderboard_cli(argv)
    command = "forgetbench-leaderboard " + " ".join(argv)
    md = target.read_text()
    assert md.startswith(f"```sh\n{command}\n```\n\nOur runs next to every published number")
    assert "| +35.00 | yes | authors' files | buffer of 100, theirs 500; tried 500: 0.86 |" in md
    assert pd.read_csv(target.with_suffix(".csv"), comment="#")["strategy"].tolist() == ["naive", "naive", "replay"]
    pairs_md = (out.parent / "grid_pairs.md").read_text()
    assert pairs_md.startswith(f"```sh\n{command}\n```\n\nPer (stream, scenario, split, model)")
    csv = pd.read_csv(out.parent / "grid_pairs.csv", comment="#")
    assert csv[["a", "b", "n"]].values.tolist() == [["replay", "naive", 2]]
    page = (out.parent / "grid.html").read_text()
    assert "<h2>Paired comparisons</h2>" in page and "<h2>Reproduction: ours next to the published numbers</h2>" in page
    err = capsys.readouterr().err
    assert f"wrote {target}\nwrote {target.with_suffix('.csv')}\nwrote {out}_pairs.md\nwrote {out}_pairs.csv" in err


def test_cli_without_pairs_writes_no_pairs(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    leaderboard_cli([str(sweep), "--references", "none"])
    assert not list(sweep.glob("*_pairs.*")) and "Paired comparisons" not in (sweep / "leaderboard.html").read_text()


def test_cli_names_a_missing_gaps_file(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    with pytest.raises(SystemExit) as exited:
        leaderboard_cli([str(sweep), "--gaps", str(tmp_path / "gaps.csv")])
    assert exited.value.code == 2 and capsys.readouterr().err.splitlines()[-1].endswith("gaps.csv: no such file")
