"""What the leaderboard's means alone do not say: how close our numbers come to the published ones
(the reproduction table), and which strategy beats which on the same seeds (paired comparisons).

Reproduction: one row per published number that matches a test-split group of the leaderboard
(:attr:`Leaderboard.published`): our mean ± CI half-width over n seeds (:func:`~benchmarks.stats.mean_ci`,
as in the leaderboard), the published value and its spread as printed, the gap (ours − published, in
percentage points), whether the published value lies inside our interval, whether the number was
verified in the paper or the authors' files, and for a gap over :data:`THRESHOLD` points what differs
and what was tried (:attr:`Leaderboard.gap_notes`), or :data:`UNEXPLAINED`.

Paired comparisons: per (stream, scenario, split, model), every two strategies run with the same seeds
under one protocol (configs equal but for the strategy node and the seed): the difference of a metric
(ACC by default) paired by seed, its Student-t interval and the paired t-test's p-value
(:func:`~benchmarks.stats.paired_difference`). A pair with no seed in common under one protocol is
kept as a row with n = 0 and a note saying why.
"""
from __future__ import annotations

import json
import math
from itertools import combinations

import pandas as pd

from forgetbench.benchmarks.leaderboard import GROUP, METRICS, TIMES, Leaderboard, gap_note
from forgetbench.benchmarks.records import flatten
from forgetbench.benchmarks.stats import mean_ci, paired_difference
from forgetbench.benchmarks.sweep import identity
from forgetbench.benchmarks.tables import (DAGGER, TITLES, cell, comments, group_columns, legend, markdown_head,
                                           markdown_notes, markdown_references, markdown_table, published_cell)

THRESHOLD = 2.0  # points: a larger gap (either way) needs a note saying what differs and what was tried
UNEXPLAINED = "not yet explained"
FRACTIONS = [m for m in METRICS if m not in TIMES]  # metrics that are fractions: their gaps are in points
DIGITS = 4  # published values carry up to 4 decimals (a percentage with 2)

# --- the reproduction table -------------------------------------------------------------------------------

REPRODUCTION_COLUMNS = [*GROUP, "metric", "n", "ours_mean", "ours_ci", "published", "reported", "gap", "inside_ci",
                        "verified", "marker", "citation", "explanation"]


def reproduction(lb: Leaderboard) -> pd.DataFrame:
    """One row per published number matching a test-split group (metrics that are fractions), sorted by
    stream, scenario, strategy: ``ours_mean``, ``ours_ci``, ``n`` (:func:`mean_ci` over the group's runs,
    at the board's confidence), ``published`` (a fraction) and ``reported`` (as printed), ``gap`` =
    100 (ours − published) in points, ``inside_ci`` (None when n < 2: no interval), ``verified``, and
    ``explanation``: the gap note, else :data:`UNEXPLAINED` where |gap| > :data:`THRESHOLD`, else empty."""
    rows = []
    groups = lb.runs.groupby(GROUP, sort=True)
    for _, match in lb.published.iterrows():
        metric = match["metric"]
        if metric not in FRACTIONS:
            continue
        key = tuple(match[c] for c in GROUP)
        mean, half, n = mean_ci(groups.get_group(key)[metric], lb.confidence)
        value = float(match["value"])
        gap = 100.0 * (mean - value)
        inside = None if math.isnan(half) else bool(abs(value - mean) <= half)
        note = gap_note(lb.gap_notes, match["stream"], match["scenario"], match["strategy"], metric)
        over = not math.isnan(gap) and abs(round(gap, 9)) > THRESHOLD  # 2.0000000001 from rounding is 2
        rows.append({**dict(zip(GROUP, key)), "metric": metric, "n": n, "ours_mean": mean, "ours_ci": half,
                     "published": value, "reported": match["reported"], "gap": gap, "inside_ci": inside,
                     "verified": match["verified"], "marker": match["marker"], "citation": match["citation"],
                     "explanation": note or (UNEXPLAINED if over else "")})
    frame = pd.DataFrame(rows, columns=REPRODUCTION_COLUMNS)
    return frame.sort_values(["stream", "scenario", "sweep", "strategy", "model", "eval_split", "metric"],
                             kind="stable").reset_index(drop=True)


def reproduction_legend(confidence: float, unverified: bool = True) -> str:
    """What the columns say; the ``†`` sentence only where a number is ``unverified``."""
    return (f"Our runs next to every published number whose conditions they satisfy (test split only). "
            f"Ours: mean ± half-width of the {confidence * 100:g}% Student-t confidence interval over n seeds, as "
            f"in the leaderboard. Published: the paper's number as a fraction, [marker] its source below; as "
            f"printed: with the spread the paper gives. Gap: ours − published, in percentage points. In our CI: "
            f"whether the published value lies inside our interval (– when n < 2). A gap over {THRESHOLD:g} points "
            f"says what differs from the paper's protocol and what was tried (the gaps notes, "
            f"results/reference/gaps.csv), or \"{UNEXPLAINED}\"."
            + (f" {DAGGER}: not verified in the paper or the authors' files (why: below)." if unverified else ""))


def _unverified(rows: pd.DataFrame) -> bool:
    return bool(legend(zip(rows["verified"], rows["marker"])))


REPRODUCTION_TITLES = ["Metric", "n", "Ours", "Published", "As printed", "Gap (points)", "In our CI", "Verified",
                       "What differs / what was tried"]  # after the group columns


def verified_text(verified: str) -> str:
    return {"paper": "paper", "authors_files": "authors' files"}.get(verified, f"no {DAGGER}")


def reproduction_cells(rows: pd.DataFrame, pm: str = "±", escape=str) -> tuple[list[str], list[list[str]]]:
    """Header and display rows of :func:`reproduction` (with a Sweep column when the board is by sweep)."""
    names = ["stream", "scenario", *group_columns(rows, ["sweep"]), "model", "strategy"]
    out = []
    for _, r in rows.iterrows():
        inside = "–" if r["inside_ci"] is None or pd.isna(r["inside_ci"]) else ("yes" if r["inside_ci"] else "no")
        out.append([escape(str(r[c])) for c in names]
                   + [METRICS[r["metric"]][0], str(r["n"]), cell(r["ours_mean"], r["ours_ci"], DIGITS, pm),
                      published_cell(r["published"], r["marker"], r["verified"], DIGITS), escape(r["reported"]),
                      "–" if pd.isna(r["gap"]) else f"{r['gap']:+.2f}", inside, verified_text(r["verified"]),
                      escape(r["explanation"])])
    return [TITLES[c] for c in names] + REPRODUCTION_TITLES, out


def _sources(lb: Leaderboard, rows: pd.DataFrame) -> list[str]:
    """The sources of the numbers and the reasons some are not verified, as Markdown list lines."""
    return markdown_references(lb) + [f"- {line}" for line in legend(zip(rows["verified"], rows["marker"]))]


def reproduction_markdown(lb: Leaderboard, commands=(), remarks=()) -> str:
    """The commands that made the runs, the remarks, a legend, the table, the board's notes, the sources."""
    rows = reproduction(lb)
    lines = [*markdown_head(commands, remarks), reproduction_legend(lb.confidence, _unverified(rows)), ""]
    if rows.empty:
        lines.append("No published number matches a test-split group of these runs.")
    else:
        header, cells = reproduction_cells(rows)
        lines += markdown_table(header, cells, right={"n", "Ours", "Published", "As printed", "Gap (points)"})
    lines += markdown_notes(lb)
    if not rows.empty:
        lines += ["", "Published numbers:", "", *_sources(lb, rows)]
    return "\n".join(lines) + "\n"


def reproduction_csv(lb: Leaderboard, commands=(), remarks=()) -> str:
    """:func:`reproduction` as CSV; commands, remarks, legend, notes and sources as ``#`` lines on top."""
    rows = reproduction(lb)
    top = [*commands, *remarks, reproduction_legend(lb.confidence, _unverified(rows)),
           *[f"Note: {n}" for n in lb.notes()],
           *[line.lstrip("- ") for line in (_sources(lb, rows) if not rows.empty else [])]]
    return "".join(f"{line}\n" for line in comments("#", top)) + rows.to_csv(index=False, float_format="%.6g")


# --- paired comparisons ---------------------------------------------------------------------------------

PAIR_GROUP = ["stream", "scenario", "eval_split", "sweep", "model"]  # sweep: "" unless the board is by sweep
PAIR_COLUMNS = [*PAIR_GROUP, "protocol", "a", "b", "metric", "n", "mean", "ci", "low", "high", "p", "seeds", "note"]


def protocol(config: dict) -> dict:
    """What two runs compared by seed must share: the config (:func:`~benchmarks.sweep.identity`, flattened)
    without the strategy node and the seeds."""
    return {k: v for k, v in flatten(identity(config)).items()
            if k != "strategy" and not k.startswith("strategy.") and k.split(".")[-1] != "seed"}


def _differing(settings: list[dict]) -> list[str]:
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({json.dumps(s.get(k), default=str) for s in settings}) > 1]


def _describe(setting: dict, keys: list[str]) -> str:
    return " ".join(f"{k}={json.dumps(setting.get(k), default=str)}" for k in keys)


def paired_comparisons(runs: pd.DataFrame, metric: str = "acc", confidence: float = 0.95) -> pd.DataFrame:
    """Per (stream, scenario, split, model) and per two strategies (or two settings of one strategy's own
    node) run under one protocol (:func:`protocol`): ``metric`` of ``a`` minus ``b`` paired by seed
    (:func:`~benchmarks.stats.paired_difference`): ``mean``, CI half-width ``ci`` and bounds ``low``,
    ``high``, two-sided paired t-test ``p``, ``n`` pairs and their ``seeds``. ``a`` is the one with the
    higher mean on those seeds, so ``mean`` >= 0 and ``low`` > 0 reads "a beats b". ``protocol`` names the
    settings that tell this protocol apart when the group holds several (else empty); ``note`` names seeds
    left unpaired. Two strategies with no seed in common under one protocol: a row with n = 0, NaN
    statistics and a ``note`` saying why. ``ci``, ``low``, ``high`` and ``p`` are NaN when n < 2."""
    rows = []
    for key, group in runs.groupby(PAIR_GROUP, sort=True):
        settings = [protocol(c) for c in group["config"]]
        nodes = [json.dumps(flatten(identity(c).get("strategy") or {}), sort_keys=True, default=str)
                 for c in group["config"]]
        group = group.assign(protocol_key=[json.dumps(s, sort_keys=True, default=str) for s in settings],
                             node=nodes)
        described = dict(zip(group["protocol_key"], settings))
        varying = _differing(list(described.values()))
        units = {}  # (strategy, its node) -> its name, with the settings that tell its variants apart if several
        for name, variants in group.groupby("strategy", sort=True)["node"]:
            own = {node: {f"strategy.{k}": v for k, v in json.loads(node).items()} for node in sorted(set(variants))}
            apart = _differing(list(own.values()))
            for node, setting in own.items():
                units[(name, node)] = f"{name} ({_describe(setting, apart)})" if len(own) > 1 else name
        for (name_a, node_a), (name_b, node_b) in combinations(units, 2):
            ra = group[(group["strategy"] == name_a) & (group["node"] == node_a)]
            rb = group[(group["strategy"] == name_b) & (group["node"] == node_b)]
            a, b = units[(name_a, node_a)], units[(name_b, node_b)]
            compared = 0
            for pkey in sorted(set(ra["protocol_key"]) & set(rb["protocol_key"])):
                xa = ra[ra["protocol_key"] == pkey].set_index("seed")[metric]
                xb = rb[rb["protocol_key"] == pkey].set_index("seed")[metric]
                seeds = sorted(set(xa.index) & set(xb.index))
                if not seeds:
                    continue
                compared += 1
                mean, half, p, n = paired_difference(xa[seeds], xb[seeds], confidence)
                first, second = (a, b) if not mean < 0 else (b, a)  # the higher one first: mean >= 0
                mean = abs(mean) if not math.isnan(mean) else mean
                unpaired = [f"{who} {', '.join(map(str, sorted(set(x.index) - set(seeds))))}"
                            for who, x in ((a, xa), (b, xb)) if set(x.index) - set(seeds)]
                rows.append({**dict(zip(PAIR_GROUP, key)), "protocol": _describe(described[pkey], varying),
                             "a": first, "b": second, "metric": metric, "n": n, "mean": mean, "ci": half,
                             "low": mean - half, "high": mean + half, "p": p, "seeds": " ".join(map(str, seeds)),
                             "note": f"seeds without a pair left out: {'; '.join(unpaired)}" if unpaired else ""})
            if not compared:
                if set(ra["protocol_key"]) & set(rb["protocol_key"]):
                    why = (f"no seed in common ({a}: {', '.join(map(str, sorted(ra['seed'])))}; "
                           f"{b}: {', '.join(map(str, sorted(rb['seed'])))})")
                else:
                    differ = _differing([described[k] for k in {*ra["protocol_key"], *rb["protocol_key"]}])
                    why = f"not run under one protocol (their runs differ in {', '.join(differ)})"
                rows.append({**dict(zip(PAIR_GROUP, key)), "protocol": "", "a": a, "b": b, "metric": metric,
                             "n": 0, "mean": math.nan, "ci": math.nan, "low": math.nan, "high": math.nan,
                             "p": math.nan, "seeds": "", "note": f"not compared: {why}"})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def pairs_legend(metric: str, confidence: float) -> str:
    title = METRICS[metric][0]
    return (f"Per (stream, scenario, split, model), every two strategies run with the same seeds under one "
            f"protocol (configs equal but for the strategy): A − B of {title} paired by seed, A the higher; "
            f"mean ± half-width of the {confidence * 100:g}% Student-t interval of the per-seed differences; p: "
            f"two-sided paired t-test (scipy.stats.ttest_rel); n: pairs. \"A > B\" where the interval excludes 0 "
            f"(p < {1 - confidence:.2g}); – where n < 2.")


def _p(p) -> str:
    return "–" if pd.isna(p) else f"{p:.2g}"


def pairs_cells(pairs: pd.DataFrame, pm: str = "±", escape=str) -> tuple[list[str], list[list[str]]]:
    """Header and display rows of the compared pairs (n > 0); a Protocol column when a group holds several."""
    compared = pairs[pairs["n"] > 0]
    with_protocol = bool((compared["protocol"] != "").any())
    shown = group_columns(compared, PAIR_GROUP)
    metric = METRICS[pairs["metric"].iloc[0]][0] if len(pairs) else "ACC"
    header = [TITLES[c] for c in shown] + [*(["Protocol"] if with_protocol else []), "A", "B", "n",
                                           f"A − B ({metric})", "p", "Verdict"]
    rows = []
    for _, r in compared.iterrows():
        verdict = "–" if pd.isna(r["low"]) else (f"{r['a']} > {r['b']}" if r["low"] > 0 else "not separated")
        rows.append([escape(str(r[c])) for c in shown] + ([escape(r["protocol"])] if with_protocol else [])
                    + [escape(r["a"]), escape(r["b"]), str(r["n"]),
                       ("+" if r["mean"] >= 0 else "") + cell(r["mean"], r["ci"], 3, pm), _p(r["p"]),
                       escape(verdict)])
    return header, rows


def pair_notes(pairs: pd.DataFrame) -> list[str]:
    """``<stream>/<scenario>/<split>/<model>: a vs b: <note>`` for every pair skipped or with seeds left out."""
    return [f"{'/'.join(str(r[c]) for c in PAIR_GROUP if r[c] != '')}: {r['a']} vs {r['b']}: {r['note']}"
            for _, r in pairs.iterrows() if r["note"]]


def pairs_markdown(lb: Leaderboard, pairs: pd.DataFrame, commands=(), remarks=()) -> str:
    """The commands, the remarks, a legend, the table of compared pairs, the pairs not compared (or on fewer
    seeds) and the board's notes."""
    metric = pairs["metric"].iloc[0] if len(pairs) else "acc"
    lines = [*markdown_head(commands, remarks), pairs_legend(metric, lb.confidence), ""]
    header, rows = pairs_cells(pairs)
    lines += markdown_table(header, rows, right={"n", header[-3], "p"}) if rows else [
        "No two strategies share seeds and a protocol."]
    skipped = pair_notes(pairs)
    if skipped:
        lines += ["", "Pairs not compared, or compared on fewer seeds:", "", *[f"- {line}" for line in skipped]]
    return "\n".join(lines + markdown_notes(lb)) + "\n"


def pairs_csv(lb: Leaderboard, pairs: pd.DataFrame, commands=(), remarks=()) -> str:
    """Every pair (compared or not) as CSV; commands, remarks, legend and the board's notes as ``#`` lines on top."""
    metric = pairs["metric"].iloc[0] if len(pairs) else "acc"
    top = [*commands, *remarks, pairs_legend(metric, lb.confidence), *[f"Note: {n}" for n in lb.notes()]]
    return "".join(f"{line}\n" for line in comments("#", top)) + pairs.to_csv(index=False, float_format="%.6g")
