"""Regression pins (in the spirit of ContinualAI's continual-learning-baselines): reduced-budget
versions of the paper presets, seed 0, each result pinned in ``tests/regression/pinned.csv`` with a
tolerance. A case fails when its metric drops below ``pinned - tolerance``: a change that makes a
strategy learn or remember less is caught here before it reaches a published table.

Re-pin after an intended change: ``FORGETBENCH_REPIN=1 python -m pytest tests/test_regression.py``
writes the measured values into the CSV (review the diff before committing it)."""
import os
from pathlib import Path

import pandas as pd
import pytest

import forgetbench
from tests.conftest import compose_cfg

PINS = Path(__file__).parent / "regression" / "pinned.csv"
CASES = pd.read_csv(PINS).fillna({"note": ""})
REPIN = os.environ.get("FORGETBENCH_REPIN") == "1"


@pytest.mark.parametrize("case", CASES.to_dict("records"), ids=list(CASES["case"]))
def test_reduced_preset_stays_at_its_pinned_result(case, mnist_root, tmp_path):
    cfg = compose_cfg([*case["overrides"].split(), "seed=0", "progress=false", "threads=1", "device=cpu"])
    measured = forgetbench.run(cfg, tmp_path / case["case"])["metrics"][case["metric"]]
    if REPIN:
        pins = pd.read_csv(PINS)
        pins.loc[pins["case"] == case["case"], "pinned"] = round(measured, 4)
        pins.to_csv(PINS, index=False)
        return
    floor = float(case["pinned"]) - float(case["tolerance"])
    assert measured >= floor, (f"{case['case']}: {case['metric']} {measured:.4f} < pinned {case['pinned']} - "
                               f"tolerance {case['tolerance']} ({case['overrides']})")
