"""The HTML leaderboard in a real headless Chromium: it loads without errors, the table and images render."""
import shutil
import subprocess

import pytest
from matplotlib.image import imread

from forgetbench.benchmarks import html_report, leaderboard
from tests.leaderboard_records import make_sweep

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install_chromium.sh)")


def chromium(page, profile, *args) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr"]
    return subprocess.run([CHROMIUM, *flags, *args, page.as_uri()], capture_output=True, text=True, timeout=120,
                          check=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    board = leaderboard.build([make_sweep(root / "sweep")])
    path = root / "leaderboard.html"
    path.write_text(html_report.to_html(board, ["forgetbench -m strategy=naive,replay"]))
    return path


def test_page_is_self_contained(page):
    text = page.read_text()
    assert "http://" not in text and "https://" not in text
    assert text.count('src="data:image/png;base64,') == 1 + 2  # one curve plot, two heatmaps


def test_page_loads_without_errors_and_renders(page, tmp_path):
    dom = chromium(page, tmp_path / "profile", "--dump-dom")
    assert "Uncaught" not in dom.stderr, dom.stderr  # no JavaScript error
    assert dom.stdout.count("<tr>") == 1 + 2  # header + one row per strategy

    shot = tmp_path / "shot.png"
    chromium(page, tmp_path / "profile", "--window-size=1200,1400", f"--screenshot={shot}")
    pixels = imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not blank
    colored = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.25  # the table is grey; the figures are not
    assert colored.mean() > 0.01  # the PNGs decoded and show
