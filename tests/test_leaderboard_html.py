"""The HTML leaderboard in a real headless Chromium: it loads without errors; the table comes first, its
notes right under it; every figure shows at its own aspect ratio, heatmap labels at a readable size."""
import json
import shutil
import subprocess

import pytest
from matplotlib.image import imread

from forgetbench.benchmarks import html_report, leaderboard, plots
from tests.leaderboard_records import make_sweep, write_raw, write_record

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install_chromium.sh)")

# Appended to a copy of the page: once it has loaded, what the reader sees, as JSON in <pre id="measured">.
MEASURE = """<script>
window.addEventListener("load", () => {
  const box = (e) => e.getBoundingClientRect();
  const first = [...document.body.children].find((e) => e.tagName !== "H1");
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({
    first: first.tagName, after_table: document.querySelector("table").nextElementSibling.className,
    table_top: box(document.querySelector("table")).top,
    images: [...document.images].map((i) => ({shown: [box(i).width, box(i).height],
                                              natural: [i.naturalWidth, i.naturalHeight]})),
  });
  document.body.appendChild(out);
});
</script>"""


def chromium(page, profile, *args) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--window-size=1200,1400"]
    return subprocess.run([CHROMIUM, *flags, *args, page.as_uri()], capture_output=True, text=True, timeout=120,
                          check=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """Naive and replay, a joint run (offline: its matrix has only the first and last rows), a skipped record."""
    root = tmp_path_factory.mktemp("html")
    sweep = make_sweep(root / "sweep")
    write_record(sweep, 8, "joint", 0, [[0.1, 0.1], [None, None], [0.9, 0.95]], 30.0, upper_bound=True, offline=True)
    write_raw(sweep, "9__empty", "")
    board = leaderboard.build([sweep])
    path = root / "leaderboard.html"
    path.write_text(html_report.to_html(board, ["forgetbench -m strategy=naive,replay"], ["the paper's protocol"]))
    return path


@pytest.fixture(scope="module")
def measured(page, tmp_path_factory) -> dict:
    copy = page.with_name("measured.html")
    copy.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = chromium(copy, tmp_path_factory.mktemp("profile"), "--virtual-time-budget=5000", "--dump-dom")
    assert "Uncaught" not in dom.stderr, dom.stderr  # no JavaScript error
    return json.loads(dom.stdout.split('<pre id="measured">')[1].split("</pre>")[0].replace("&quot;", '"'))


def test_page_is_self_contained(page):
    text = page.read_text()
    assert "http://" not in text and "https://" not in text
    assert text.count('src="data:image/png;base64,') == 1 + 3  # one curve plot, three heatmaps


def test_the_table_comes_first_then_its_notes(measured):
    assert measured["first"] == "TABLE" and measured["table_top"] < 150  # right under the title
    assert measured["after_table"] == "notes"


def test_the_commands_and_remarks_are_in_a_collapsed_section(page):
    details = page.read_text().split("<details>")[1].split("</details>")[0]
    assert "forgetbench -m strategy=naive,replay" in details and "the paper&#x27;s protocol" in details


def test_images_keep_their_aspect_ratio_and_labels_are_readable(measured):
    assert len(measured["images"]) == 4
    for image in measured["images"]:
        (width, height), (natural_width, natural_height) = image["shown"], image["natural"]
        assert width / height == pytest.approx(natural_width / natural_height, rel=0.015), image
        assert plots.FONT * html_report.DPI / 72 * width / natural_width >= 10  # px: labels, ticks, colour bar


def test_page_loads_without_errors_and_renders(page, tmp_path):
    dom = chromium(page, tmp_path / "profile", "--dump-dom")
    assert "Uncaught" not in dom.stderr, dom.stderr  # no JavaScript error
    assert dom.stdout.count("<tr>") == 1 + 3  # header + one row per strategy

    shot = tmp_path / "shot.png"
    chromium(page, tmp_path / "profile", f"--screenshot={shot}")
    pixels = imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not blank
    colored = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.25  # the table is grey; the figures are not
    assert colored.mean() > 0.01  # the PNGs decoded and show
