"""JupyterLab in a real chromium: the toy notebook runs from the UI as a user would run it.

`make lab` serves ``notebooks/``; this test serves a throw-away copy of the project layout
(``<tmp>/pyproject.toml`` and ``<tmp>/notebooks/01_toy_alignment.ipynb``), types the smoke profile
into the parameters cell, runs every cell from the Run menu, saves with Ctrl+S and checks the
notebook on disk, the rendered page and the results folder. Run it with ``make test-browser``
(``make browser`` installs Debian's chromium and Playwright); ``make test`` deselects it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest

from bplambda.profiles import RESULTS_ROOT_VARIABLE

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "01_toy_alignment.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
QUICK_LINE = re.compile(r'^profile = "quick"')
SMOKE_LINE = 'profile = "smoke"'
# The smoke run takes ~45 s alone on 2 cores and has taken 190 s beside another torch job.
RUN_TIMEOUT_S = 600
N_FIGURES = 3
# Where the smoke run writes, relative to the project root: `make lab` puts results under
# results/lab/ (output_dir = None outside the quick profile means <root>/<profile>/<notebook>).
RESULTS_ROOT = "results/lab"
RESULTS_DIR = f"{RESULTS_ROOT}/smoke/{NOTEBOOK.stem}"
STDERR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
# The status bar's kernel item, e.g. "Python 3 (ipykernel) | Idle" (the toolbar's indicator
# already says idle while the kernel is still starting).
KERNEL_STATUS = '.jp-StatusBar-TextItem[title^="Change kernel"]'
# Open when every cell of the file is on the page and the kernel is idle.
NOTEBOOK_READY_JS = """([n, status]) =>
  document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length === n
  && / \\| Idle$/.test(document.querySelector(status)?.textContent ?? '')"""
# Done when no cell is queued or running ([*]), the first code cell has run, and the kernel is
# idle. A failing cell makes JupyterLab drop the queue, so a failure ends the wait at once.
RUN_FINISHED_JS = """(status) => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.trim());
  return prompts.length > 0 && /^\\[\\d+\\]:$/.test(prompts[0])
    && prompts.every(p => !p.includes('*'))
    && / \\| Idle$/.test(document.querySelector(status)?.textContent ?? '');
}"""


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab server on the throw-away project."""

    project: Path
    port: int
    token: str
    log: Path

    def url(self, path: str) -> str:
        """``path`` on the server, with the token."""
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"


def log(message: str) -> None:
    """Progress on the terminal (``make test-browser`` runs pytest with ``-s``)."""
    print(f"[browser {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_project(root: Path) -> Path:
    """``root/pyproject.toml`` and ``root/notebooks/<toy notebook>``, an unchanged copy."""
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(NOTEBOOK, root / "notebooks" / NOTEBOOK.name)
    return root


def lab_settings(folder: Path) -> Path:
    """User settings that silence the news toast (it could cover the page)."""
    path = folder / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return folder


def wait_until_up(lab: Lab, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    """Poll ``/api/status`` until the server answers; fail with its log if it exits or hangs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited ({process.returncode}):\n{tail(lab.log)}")
        try:
            with urllib.request.urlopen(lab.url("api/status"), timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer in {timeout_s} s:\n{tail(lab.log)}")


def stop(lab: Lab, process: subprocess.Popen[bytes]) -> None:
    """Shut the server down through its API (it stops its kernels, which live in their own
    process groups), then end its process group whatever happened."""
    request = urllib.request.Request(lab.url("api/shutdown"), method="POST")
    try:
        urllib.request.urlopen(request, timeout=10).close()
        process.wait(timeout=15)
    except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
        pass
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            break
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of the server's log."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def require_browser() -> None:
    """Skip, saying what to run, where chromium or playwright is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is missing: run `make browser`")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab as ``make lab`` starts it, on a copy of the project in ``tmp_path``."""
    require_browser()
    project = build_project(tmp_path / "project")
    lab = Lab(project, free_port(), secrets.token_hex(16), tmp_path / "jupyter-lab.log")
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(lab_settings(tmp_path / "lab-settings")),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        RESULTS_ROOT_VARIABLE: RESULTS_ROOT,  # as `make lab` sets it
    }
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={lab.port}",
        f"--ServerApp.token={lab.token}", f"--ServerApp.root_dir={project / 'notebooks'}",
        "--ServerApp.open_browser=False",
    ]  # fmt: skip
    if os.geteuid() == 0:  # CI and this machine run as root; jupyter refuses without this
        command.append("--ServerApp.allow_root=True")
    with lab.log.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=project, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_up(lab, process)
        log(f"jupyter lab up on port {lab.port} (log: {lab.log})")
        yield lab
    finally:
        stop(lab, process)
        log("jupyter lab stopped")


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A chromium page (Debian's browser, driven by Playwright); a screenshot on the way out."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:  # passed or failed, before the server stops
            screenshot(page, tmp_path / "jupyterlab.png")
            browser.close()


def screenshot(page: Page, path: Path) -> None:
    """The page with the first figure scrolled into view (where there is one), and beside it
    ``<name>-top.png``: the notebook's start (title, math, parameters)."""
    try:
        page.locator(".jp-NotebookPanel .jp-Cell").first.scroll_into_view_if_needed(timeout=5_000)
        page.screenshot(path=str(path.with_stem(f"{path.stem}-top")), full_page=True)
        figures = page.locator(".jp-OutputArea-output img")
        if figures.count():
            figures.first.scroll_into_view_if_needed(timeout=5_000)
        page.screenshot(path=str(path), full_page=True)
        log(f"screenshot: {path}")
    except Exception as error:  # the page may be gone; the test's own error matters more
        log(f"no screenshot ({error})")


def set_smoke_profile(page: Page) -> None:
    """Type ``profile = "smoke"`` over the parameters cell's ``profile = "quick"`` line."""
    line = page.locator(".jp-CodeCell .cm-line", has_text=QUICK_LINE)
    assert line.count() == 1, 'the parameters cell has no single `profile = "quick"` line'
    line.click()
    page.keyboard.press("Home")
    page.keyboard.press("Shift+End")
    page.keyboard.insert_text(SMOKE_LINE)  # no key events: no auto-closed quotes
    page.keyboard.press("Escape")  # back to command mode
    editor = page.locator(".jp-CodeCell .cm-content").first
    assert re.search(r'^profile = "smoke"$', editor.inner_text(), re.M), editor.inner_text()


def run_all_cells(page: Page) -> None:
    """Run → Run All Cells, from the menu bar."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def save(page: Page) -> None:
    """Ctrl+S, then wait until no tab is marked dirty: the server has written the file."""
    dirty = page.locator(".lm-TabBar-tab.jp-mod-dirty")
    dirty.first.wait_for()  # the run's outputs changed the notebook
    page.keyboard.press("Control+s")
    dirty.first.wait_for(state="detached", timeout=30_000)


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """``cell <i>: <ename>: <evalue>`` for every error output of the notebook."""
    return [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def test_toy_notebook_runs_in_jupyterlab(lab: Lab, page: Page) -> None:
    """Open, type the smoke profile, Run All Cells, save; then (a) no error, (b) the figures are
    shown, (c) results went to the project's results folder, (d) MathJax typeset the math."""
    source = nbformat.read(NOTEBOOK, as_version=4)
    n_code = sum(c.cell_type == "code" for c in source.cells)
    has_math = any("$" in c.source for c in source.cells if c.cell_type == "markdown")

    page.goto(lab.url(f"lab/tree/{NOTEBOOK.name}"))
    page.wait_for_function(NOTEBOOK_READY_JS, arg=[len(source.cells), KERNEL_STATUS])
    log("notebook open, kernel idle")

    set_smoke_profile(page)
    started = time.monotonic()
    run_all_cells(page)
    page.wait_for_function(
        RUN_FINISHED_JS, arg=KERNEL_STATUS, timeout=RUN_TIMEOUT_S * 1000, polling=500
    )
    log(f"run finished in {time.monotonic() - started:.0f} s")
    save(page)

    saved = nbformat.read(lab.project / "notebooks" / NOTEBOOK.name, as_version=4)
    parameters = next(c for c in saved.cells if "parameters" in c.metadata.get("tags", []))
    assert SMOKE_LINE in parameters.source, "the typed smoke profile was not saved"
    counts = [c.execution_count for c in saved.cells if c.cell_type == "code"]
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()

    # (a) no error: in the saved file and on the page
    assert not error_outputs(saved), error_outputs(saved)
    stderr = page.locator(STDERR_OUTPUT).all_text_contents()
    assert not [t for t in stderr if re.search("Traceback|Error|Warning", t)], stderr
    assert len(counts) == n_code and all(counts), f"cells left unexecuted (saved): {counts}"
    assert all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), prompts

    # (b) the figures are shown
    n_images = page.locator(".jp-OutputArea-output img").count()
    assert n_images >= N_FIGURES, f"{n_images} figures shown, expected {N_FIGURES}"

    # (c) results land in the project's results folder, not beside the notebook
    stray = lab.project / "notebooks" / "results"
    assert not stray.exists(), f"results written beside the notebook: {sorted(stray.rglob('*'))}"
    folder = lab.project / RESULTS_DIR
    assert (folder / "final.csv").is_file() and list(folder.glob("*.png")), sorted(
        p.relative_to(lab.project) for p in lab.project.rglob("*") if p.is_file()
    )

    # (d) markdown math is typeset by MathJax (only where the notebook has $...$ math)
    if has_math:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            page.locator("mjx-container").first.wait_for(timeout=30_000)
        except PlaywrightTimeout:
            pytest.fail("the markdown has $...$ math but MathJax typeset none (no mjx-container)")
