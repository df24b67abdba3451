"""The panels tutorial in a real browser: JupyterLab on 127.0.0.1, Debian's chromium driven by Python playwright.

Runs every cell of tutorials/05_panels_tour.ipynb, moves the first latent slider with the keyboard, and checks that
the plotly figure in the page changed (its data read from the DOM). Screenshots go to ``$PERTURBKIT_SCREENSHOTS``
(default ``build/screenshots``). Run alone with ``pytest -m browser``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = ROOT / "tutorials" / "05_panels_tour.ipynb"
SCREENSHOTS = Path(os.environ.get("PERTURBKIT_SCREENSHOTS", ROOT / "build" / "screenshots"))
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with a token, serving a copy of the panels tutorial; stopped afterwards."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does")
    pytest.importorskip("playwright.sync_api", reason="Python playwright is missing: pip install -e '.[dev]'")
    root, settings = tmp_path / "root", tmp_path / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    (settings / "@jupyterlab" / "docmanager-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings").write_text(
        json.dumps({"autoStartDefaultKernel": True})
    )  # no "Select Kernel" dialog
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    # render every cell (no virtual scrolling), so the page holds every prompt and output to check
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"})
    )
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    token, port = uuid.uuid4().hex, _free_port()
    env = dict(
        os.environ,
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        OMP_NUM_THREADS="1",
    )
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield {"base": base, "token": token, "notebook": NOTEBOOK.name}
    finally:
        try:  # shut the kernels down, then the server
            for kernel in _get(f"{base}/api/kernels?token={token}") or []:
                request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
                urllib.request.urlopen(request, timeout=10)
        except OSError:
            pass
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    assert server.poll() is not None


def _run_all(page, n_code_cells: int, timeout_s: float = 420) -> None:
    """Run all cells (retrying the menu, which is occasionally dropped) and wait until each has an execution count."""
    deadline = time.time() + timeout_s
    started = False
    for _ in range(4):
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():  # a kernel dialog despite the setting: accept the default kernel
            dialog.first.click()
        try:
            # short timeouts: a kernel dialog that opens meanwhile blocks the clicks; the next pass accepts it
            page.locator(".jp-Notebook .jp-Cell").first.click(timeout=10000)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click(timeout=10000)
            page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click(timeout=10000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-InputArea-prompt')]"
                ".some(p => /\\[[0-9*]+\\]/.test(p.textContent))",
                timeout=15000,
            )
            started = True
            break
        except Exception:  # noqa: BLE001 - the menu click was dropped; try again
            continue
    assert started, "Run All Cells never started the kernel"
    page.wait_for_function(
        f"() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]"
        f".filter(p => /\\[[0-9]+\\]/.test(p.textContent)).length >= {n_code_cells}",
        timeout=max(1000, int((deadline - time.time()) * 1000)),
    )


def _first_plot_state(page) -> dict:
    return page.evaluate("""() => {
        const plot = document.querySelector('.js-plotly-plot');
        return {y: Array.from(plot.data[0].y), title: plot.layout.title.text, n_plots:
                document.querySelectorAll('.js-plotly-plot').length};
    }""")


def test_panels_tutorial_in_jupyterlab(jupyterlab):
    import nbformat
    from playwright.sync_api import sync_playwright

    n_code = sum(c.cell_type == "code" for c in nbformat.read(NOTEBOOK, as_version=4).cells)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    url = f"{jupyterlab['base']}/lab/tree/{jupyterlab['notebook']}?token={jupyterlab['token']}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            failed = True
            page.goto(url)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120000)
            _run_all(page, n_code)
            page.wait_for_selector(".widget-slider", timeout=60000)
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60000)
            page.wait_for_timeout(1500)
            text = page.locator(".jp-Notebook").inner_text()
            assert "Traceback" not in text and "Error displaying widget" not in text
            before = _first_plot_state(page)
            assert before["n_plots"] >= 7  # traversal, embedding + profile, LSA, response, traversal, response
            # 120 features; the browser's sliders did not move anything by snapping to their grid
            assert len(before["y"]) == 120 and "moved: 0=+2.50" in before["title"], before["title"]

            panel = page.locator(".jp-OutputArea-output", has=page.locator(".widget-slider")).first
            panel.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            panel.screenshot(path=str(SCREENSHOTS / "01_traversal_before.png"))
            handle = panel.locator(".widget-slider .noUi-handle").first
            handle.focus()
            for _ in range(3):
                handle.press("ArrowLeft")
            page.wait_for_function(
                "(old) => { const p = document.querySelector('.js-plotly-plot');"
                " return p && p.layout.title.text !== old; }",
                arg=before["title"],
                timeout=20000,
            )
            after = _first_plot_state(page)
            assert after["y"] != before["y"]
            moved = re.search(r"moved: 0=([+-][0-9.]+)$", after["title"])  # only latent 0 moved, and it went down
            assert moved and float(moved.group(1)) < 2.5, after["title"]
            panel.screenshot(path=str(SCREENSHOTS / "02_traversal_after.png"))
            for i, name in enumerate(("embedding", "lsa", "response_dcs", "traversal_dcs", "response_cyclecdr")):
                output = page.locator(".jp-OutputArea-output", has=page.locator(".js-plotly-plot")).nth(i + 1)
                output.scroll_into_view_if_needed()
                page.wait_for_timeout(500)
                output.screenshot(path=str(SCREENSHOTS / f"{i + 3:02d}_{name}.png"))
            failed = False
        finally:
            if failed:
                page.screenshot(path=str(SCREENSHOTS / "failure.png"), full_page=True)
            browser.close()
