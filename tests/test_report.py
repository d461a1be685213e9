"""Tests of `kagent report`: a real run (scripted `cmd:` model, real sandbox) rendered to one
self-contained HTML page, then opened in a real headless Chromium, which must load it without a
console error and paint its plots where the page's SVGs are."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from kagent.agent.report_plots import CURVE_COLOUR, STATUS_COLOURS
from conftest import ROOT, TASKS

SCRIPT = Path(__file__).resolve().parent / "scripted_model.py"
RELU = str(TASKS / "01_relu.py")
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
WINDOW = (1200, 2400)


def kagent(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kagent.agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=dict(os.environ))


def statuses(run_dir: Path) -> set[str]:
    with sqlite3.connect(run_dir / "archive.db") as db:
        return {row[0] for row in db.execute("SELECT COALESCE(verdict_status, status) FROM candidates")}


def edit_archive(run_dir: Path, *statements: tuple[str, tuple]) -> None:
    db = sqlite3.connect(run_dir / "archive.db")
    try:
        for sql, params in statements:
            db.execute(sql, params)
        db.commit()
    finally:
        db.close()


def render(target: Path | str, out: Path, *extra: str) -> str:
    proc = kagent("report", str(target), "-o", str(out), *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(out)
    return out.read_text()


@pytest.fixture(scope="module")
def run_dir(improve_runs) -> Path:
    """A real three-candidate run: a slow correct draft, then a faster refinement (conftest.py;
    shared with other files: tests copy it before changing it)."""
    return Path(improve_runs[1][1]["run_dir"])


@pytest.fixture(scope="module")
def run_report(run_dir, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return out, render(run_dir, out)


# ---------------------------------------------------------------- the browser


@dataclass
class Browsed:
    returncode: int
    log: str  # Chromium's stderr (--enable-logging=stderr): console messages land here
    png: Path
    boxes: dict[str, list[int]]  # data-plot name + index -> [left, top, right, bottom] in CSS px

    def console_errors(self) -> list[str]:
        return [line for line in self.log.splitlines() if "CONSOLE" in line or "Uncaught" in line]

    def pixels(self) -> np.ndarray:
        from PIL import Image

        with Image.open(self.png) as image:
            assert image.size == WINDOW
            return np.asarray(image.convert("RGB"), dtype=np.int16)

    def box(self, kind: str, index: int = 0) -> tuple[int, int, int, int]:
        found = sorted((b for k, b in self.boxes.items() if k.rsplit("-", 1)[0] == kind), key=lambda b: (b[1], b[0]))
        assert len(found) > index, (kind, self.boxes)
        left, top, right, bottom = found[index]
        assert 0 <= left < right <= WINDOW[0] + 1 and 0 <= top < bottom, (kind, found[index])
        assert bottom <= WINDOW[1], f"{kind} plot is below the screenshot: {found[index]}"
        return left, top, right, bottom


def count_colour(pixels: np.ndarray, box: tuple[int, int, int, int], hex_colour: str, tolerance: int = 10) -> int:
    left, top, right, bottom = box
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    region = pixels[top:bottom, left:right]
    return int(np.all(np.abs(region - rgb) <= tolerance, axis=-1).sum())


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", f"--window-size={WINDOW[0]},{WINDOW[1]}"]

# Injected into a copy of the page (never into the report itself): where each plot's SVG is laid
# out, in the same window size as the screenshot, printed into the DOM that --dump-dom prints.
MEASURE = """<script>
const boxes = {};
document.querySelectorAll("svg[data-plot]").forEach((svg, i) => {
  const r = svg.getBoundingClientRect();
  boxes[svg.dataset.plot + "-" + i] = [r.left, r.top, r.right, r.bottom].map(Math.round);
});
document.body.insertAdjacentHTML("beforeend", '<pre id="plot-boxes">' + JSON.stringify(boxes) + "</pre>");
</script></body>"""


def chromium(page: Path, work: Path, *flags: str) -> subprocess.CompletedProcess:
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, page.as_uri()],
                          capture_output=True, text=True, timeout=180)


def browse(page: Path, work: Path) -> Browsed:
    """Screenshot `page` in headless Chromium; measure where its plots are laid out."""
    work.mkdir(parents=True, exist_ok=True)
    png = work / f"{page.stem}.png"
    shot = chromium(page, work, f"--screenshot={png}")
    measured = work / f"{page.stem}.measure.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE, 1))
    dom = chromium(measured, work, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.findall(r'<pre id="plot-boxes">(\{.*?)</pre>', dom.stdout, re.S)  # not the script's own text
    assert found, dom.stdout[-2000:]
    return Browsed(shot.returncode, shot.stderr, png, json.loads(html.unescape(found[-1])))


# ---------------------------------------------------------------- a run's report


def test_run_report_has_every_section(run_dir, run_report):
    out, page = run_report
    assert page.startswith("<!DOCTYPE html>")
    for kind in ("curve", "lineage", "verdicts"):
        assert page.count(f'data-plot="{kind}"') == 1
    assert "Best speedup over candidates" in page and "best speedup (x)" in page and "not timed" not in page
    for heading in ("Lineage", "Verdicts", "Candidates", "Best kernel"):
        assert f"<h2>{heading}</h2>" in page
    with sqlite3.connect(run_dir / "archive.db") as db:
        rows = db.execute("SELECT id, operation, COALESCE(verdict_status, status), message FROM candidates").fetchall()
    assert len(rows) == 3
    for cid, operation, status, message in rows:
        assert f'<tr id="c{cid}"' in page and f'href="#c{cid}"' in page  # a table row, a lineage link
        assert html.escape(message, quote=True) in page
    for status in statuses(run_dir):
        assert STATUS_COLOURS[status][0] in page  # lineage node / legend / bar colour
    # The best kernel's source, escaped into a <pre>: the fast refinement.
    code = re.search(r'<pre class="code"><code>(.*?)</code></pre>', page, re.S).group(1)
    assert "#pragma omp parallel for simd" in html.unescape(code) and "&quot;&quot;&quot;" in code
    assert "<script" not in page.lower()


def test_report_is_self_contained(run_report):
    _, page = run_report
    assert not re.findall(r"""(?:src|href|action|poster|data|srcset)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"url\(|@import|<link|<iframe|<object|<embed|<img", page, re.I)
    assert "http://" not in page and "https://" not in page  # no xmlns either: inline SVG needs none


def test_run_id_under_runs_dir_and_default_output(run_dir, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs / run_dir.name)
    proc = kagent("report", run_dir.name, "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stderr
    written = runs / run_dir.name / "report.html"
    assert proc.stdout.strip() == str(written) and 'data-plot="lineage"' in written.read_text()


def as_v1_archive(run_dir: Path) -> None:
    """Turn a run's archive back into schema v1 (before runs.host): what a read-write open
    would migrate."""
    edit_archive(run_dir, ("ALTER TABLE runs DROP COLUMN host", ()), ("PRAGMA user_version = 1", ()))


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_report_leaves_the_archive_untouched(run_dir, tmp_path):
    """`kagent report` opens the archive read-only: an older schema is not migrated, and the
    file's bytes and mtime are as they were."""
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    as_v1_archive(copy)
    archive = copy / "archive.db"
    before = fingerprint(archive)
    page = render(copy.name, tmp_path / "v1.html", "--runs-dir", str(tmp_path / "runs"))  # by run id
    assert 'data-plot="lineage"' in page
    assert fingerprint(archive) == before
    assert sqlite3.connect(archive).execute("PRAGMA user_version").fetchone() == (1,)


HOLD_OPEN = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")  # a writer mid-transaction, as a live run is between its writes
db.execute("UPDATE runs SET stop_reason = stop_reason")
print("holding", flush=True)
sys.stdin.read()
"""


def test_report_works_while_another_process_holds_the_archive(run_dir, tmp_path):
    """A run in progress holds its archive open (here mid-write, with the write lock); a report
    on it neither waits for that lock nor changes the file."""
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    as_v1_archive(copy)
    archive = copy / "archive.db"
    before = fingerprint(archive)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(archive)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        proc = kagent("report", str(copy), "-o", str(tmp_path / "held.html"), timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert 'data-plot="lineage"' in (tmp_path / "held.html").read_text()
        assert fingerprint(archive) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.mark.parametrize("make", ["missing", "empty_dir"])
def test_missing_run_fails_with_one_line(tmp_path, make):
    target = tmp_path / "nosuch"
    if make == "empty_dir":
        target.mkdir()
    out = tmp_path / "out.html"
    proc = kagent("report", str(target), "-o", str(out), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert str(target) in proc.stderr
    assert ("no such run" if make == "missing" else "not a run or batch directory") in proc.stderr
    assert not out.exists()


def test_untimed_run_says_so(run_dir, tmp_path):
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    edit_archive(copy, ("UPDATE candidates SET verdict_json = json_set(verdict_json, '$.timing_meaningful', "
                        "json('false')) WHERE verdict_json IS NOT NULL", ()))
    page = render(copy, tmp_path / "untimed.html")
    assert "not timed: showing best fitness" in page and "best fitness (not timed)" in page
    assert "eager PyTorch (1x)" not in page  # no speedup axis to compare against


def test_run_without_candidates_renders(tmp_path):
    from kagent.agent.archive import Archive, RunRecord

    run = tmp_path / "fresh-run"
    with Archive.open(run, create=True) as archive:
        archive.create_run(RunRecord(id="fresh-run", task_path=RELU, task_name="01_relu", model="cmd:true",
                                     backend="cpp", device="cpu"))
    page = render(run, tmp_path / "fresh.html")
    assert "no candidate evaluated yet" in page and "No correct kernel yet." in page and "in progress" in page


# ---------------------------------------------------------------- escaping


XSS_SOURCE = '</code></pre><script>throw new Error("xss-source")</script><pre><code>'
XSS_MESSAGE = '<img src=x onerror="throw new Error(\'xss-message\')"><script>throw new Error("xss-msg")</script>'
XSS_NAME = '"><svg onload="throw new Error(1)"><script>throw new Error("xss-name")</script>'


@pytest.fixture(scope="module")
def hostile_report(run_dir, tmp_path_factory) -> Path:
    """The run, with markup planted in everything the archive says (source, messages, names)."""
    base = tmp_path_factory.mktemp("hostile")
    copy = base / run_dir.name
    shutil.copytree(run_dir, copy)
    edit_archive(copy,
                 ("UPDATE candidates SET source = ? || source WHERE source IS NOT NULL", (XSS_SOURCE,)),
                 ("UPDATE candidates SET message = ?, verdict_reason = ?", (XSS_MESSAGE, XSS_NAME)),
                 ("UPDATE runs SET task_name = ?, model = ?, stop_reason = ?", (XSS_NAME, XSS_NAME, XSS_MESSAGE)))
    out = base / "hostile.html"
    render(copy, out)
    return out


def test_archive_text_is_escaped(hostile_report):
    page = hostile_report.read_text()
    for planted in (XSS_SOURCE, XSS_MESSAGE, XSS_NAME):
        assert planted not in page
        assert html.escape(planted, quote=True) in page
    assert "<script" not in page.lower() and "<img" not in page.lower() and "<svg onload" not in page.lower()


@needs_chromium
def test_hostile_archive_cannot_script_the_page(hostile_report, tmp_path):
    browsed = browse(hostile_report, tmp_path)
    assert browsed.returncode == 0, browsed.log[-2000:]
    assert browsed.console_errors() == []


# ---------------------------------------------------------------- in a real browser


@needs_chromium
def test_planted_console_error_is_detected(run_report, tmp_path):
    """The detector itself: a page that throws must show up in Chromium's log."""
    out, page = run_report
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("</body>", '<script>throw new Error("boom")</script></body>', 1))
    browsed = browse(broken, tmp_path)
    errors = browsed.console_errors()
    assert errors and any("boom" in line for line in errors), browsed.log[-3000:]


@needs_chromium
def test_run_report_renders_in_chromium(run_dir, run_report, tmp_path):
    out, _ = run_report
    browsed = browse(out, tmp_path)
    assert browsed.returncode == 0, browsed.log[-2000:]
    assert browsed.console_errors() == [], browsed.console_errors()
    pixels = browsed.pixels()
    curve = browsed.box("curve")
    assert count_colour(pixels, curve, CURVE_COLOUR) >= 40  # the best-so-far line and its points
    lineage, verdicts = browsed.box("lineage"), browsed.box("verdicts")
    present = statuses(run_dir)
    assert {"correct", "no_code"} <= present  # draft, duplicate draft, refinement
    for status in present:
        fill = STATUS_COLOURS[status][0]
        assert count_colour(pixels, lineage, fill) >= 30, status  # its nodes
        assert count_colour(pixels, verdicts, fill) >= 200, status  # its bar
    for status in set(STATUS_COLOURS) - present - {"pending"}:  # the check tells colours apart
        assert count_colour(pixels, lineage, STATUS_COLOURS[status][0], tolerance=4) < 5, status
        assert count_colour(pixels, verdicts, STATUS_COLOURS[status][0], tolerance=4) < 5, status


# ---------------------------------------------------------------- a batch's report


@pytest.fixture(scope="module")
def batch_report(run_dir, tmp_path_factory) -> Path:
    """A small batch laid out by hand the way `kagent batch` lays one out (summary.json, one
    <task>/<run-id>/ directory per task run): two task runs, copies of the real run, one named by
    its path and one by a path from before the batch directory was moved; a task that failed to
    start."""
    batch = tmp_path_factory.mktemp("runs") / "batch-20250101-000000-abcd"
    shutil.copytree(run_dir, batch / "01_relu" / run_dir.name)
    shutil.copytree(run_dir, batch / "sub--01_relu_again" / run_dir.name)
    tasks = [
        {"task": "01_relu.py", "status": "correct", "best_speedup": 0.93, "candidates": 3, "correct": 2,
         "run_dir": str(batch / "01_relu" / run_dir.name), "tokens": 5000, "cost_usd": 0.0, "error": None},
        {"task": "sub/01_relu_again.py", "status": "no_correct", "best_speedup": None, "candidates": 3,
         "correct": 0, "run_dir": f"/moved/away/{batch.name}/sub--01_relu_again/{run_dir.name}", "tokens": 7345,
         "cost_usd": 0.125, "error": None},
        {"task": "99_broken.py", "status": "task_error", "best_speedup": None, "run_dir": None, "candidates": 0,
         "correct": 0, "tokens": 0, "cost_usd": 0.0, "error": "99_broken.py: no get_inputs <b>here</b>"},
    ]
    (batch / "summary.json").write_text(json.dumps({
        "batch_dir": str(batch), "batch_id": batch.name, "tasks": tasks, "n_tasks": 3,
        "correct_rate": 1 / 3, "fast_1": 0.0, "fast_1_5": 0.0, "fast_2": 0.0, "geomean_speedup": 0.93,
        "tokens": 12345, "cost_usd": 0.125,
    }))
    out = batch.parent / "batch.html"
    render(batch, out)
    return out


def test_batch_report_has_summary_and_task_sections(batch_report):
    page = batch_report.read_text()
    assert "kagent batch: batch-20250101-000000-abcd" in page
    for shown in ("33.3%", "0.0%", "0.93x", "$0.1250", "12345", "7345", "no_correct", "task_error"):
        assert shown in page, shown
    for index, task in enumerate(["01_relu.py", "sub/01_relu_again.py", "99_broken.py"]):
        assert f'href="#task{index}">{task}</a>' in page and f'<section id="task{index}">' in page
    assert page.count('data-plot="curve"') == 2 and page.count('data-plot="lineage"') == 2
    assert "no get_inputs &lt;b&gt;here&lt;/b&gt;" in page and "<b>here</b>" not in page
    assert "no run archive" in page  # the task that never started
    assert 'id="t0-c1"' in page and 'id="t1-c1"' in page  # anchors unique per task
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()


@needs_chromium
def test_batch_report_renders_in_chromium(batch_report, tmp_path):
    browsed = browse(batch_report, tmp_path)
    assert browsed.returncode == 0, browsed.log[-2000:]
    assert browsed.console_errors() == [], browsed.console_errors()
    pixels = browsed.pixels()
    for index in range(2):
        assert count_colour(pixels, browsed.box("curve", index), CURVE_COLOUR) >= 30, index
        lineage = browsed.box("lineage", index)
        for status in ("correct", "no_code"):
            assert count_colour(pixels, lineage, STATUS_COLOURS[status][0]) >= 20, (index, status)
