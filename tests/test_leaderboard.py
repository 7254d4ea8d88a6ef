"""Leaderboard aggregation on hand-made records, published numbers, Markdown/LaTeX golden files, the CLI;
records that cannot be used are skipped with a warning naming them; a missing directory is an error;
the notes, commands and references in every format; where the files go; the evaluation split."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from forgetbench.benchmarks import html_report, leaderboard, plots, tables
from forgetbench.leaderboard import main as leaderboard_cli, quote, without_notes
from tests.leaderboard_records import NAIVE, REPLAY, add_broken_records, make_sweep, write_raw, write_record

GOLDEN = Path(__file__).parent / "golden"
HEADER = ["forgetbench -m strategy=naive,replay seed=0,1,2"]
REMARKS = ["One epoch per experience, unlike the paper's protocol."]
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
        + "split_mnist,class,mlp,naive,acc,0.2,20,,Paper C,one head\n"
        + "split_mnist,class,mlp,naive,bwt,-0.9,-90,,Paper D,D's protocol\n"
        + "split_mnist,class,mlp,replay,acc,0.9,90,,Paper C,one head; replay buffer 100\n")
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
    assert rows[0]["Published ACC"] == "0.199 [1]" and rows[2]["Published ACC"] == ""
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
