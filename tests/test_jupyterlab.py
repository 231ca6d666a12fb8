"""Lesson 01 runs top to bottom in a real JupyterLab, driven through its menus.

A JupyterLab server (from this environment) serves a copy of notebooks/ in a
temporary folder, so nothing in the checkout is modified or saved. Chromium opens
the first lesson, clicks Run -> Run All Cells and waits until every code cell has an
execution count; no cell may show an error. A screenshot goes to the temporary folder.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS, MARKS

REPO = Path(__file__).resolve().parents[1]
LESSON = REPO / "notebooks" / "01_loading.ipynb"
RUN_TIMEOUT_S = 180
START_TIMEOUT_S = 60

pytestmark = MARKS

# Every notebook cell stays in the DOM (JupyterLab 4 may virtualise long notebooks), the
# notebook's kernel starts without the "Select Kernel" dialog, and no news pop-up covers
# the menus.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none", "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_api(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer {url} within {START_TIMEOUT_S} s:\n"
                f"{log.read_text()[-3000:]}")


def _start_lab(root: Path, home: Path) -> tuple[subprocess.Popen, str, str, Path]:
    """Start JupyterLab on ``root``; returns (process, base url, token, log file)."""
    settings = home / "lab-settings"
    for name, values in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # keep inline figures
    env.update(JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "lab-workspaces"),
               JUPYTER_CONFIG_DIR=str(home / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(home / "jupyter-runtime"))
    port, token = _free_port(), secrets.token_hex(16)
    log = home / "jupyter-lab.log"
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter) if jupyter.exists() else "jupyter", "lab", "--no-browser",
           "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
           "--ServerApp.open_browser=False"]
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    _wait_for_api(f"{base}/api?token={token}", proc, log)
    return proc, base, token, log


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its kernels
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _clear_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    path.write_text(json.dumps(nb))


def _wait_for_idle_kernel(base: str, token: str, name: str) -> None:
    """Wait until the server has a session for notebook ``name`` whose kernel is idle."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as r:
            sessions = json.load(r)
        if any(s["path"].endswith(name) and (s.get("kernel") or {}).get("execution_state")
               == "idle" for s in sessions):
            return
        time.sleep(0.5)
    pytest.fail(f"no idle kernel for {name} after {START_TIMEOUT_S} s: {sessions}")


def _prompts(pg) -> list[str]:
    return pg.eval_on_selector_all(
        ".jp-Notebook .jp-CodeCell .jp-InputArea-prompt",
        "els => els.map(e => e.textContent.trim())")


def run_all_cells(notebook: Path, tmp_path: Path) -> Path:
    """Open a copy of ``notebook`` (and its folder) in JupyterLab and run every cell.

    Returns the screenshot path. Fails when a cell errors or the run takes too long.
    """
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "root"
    shutil.copytree(notebook.parent, root / notebook.parent.name,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    relative = f"{notebook.parent.name}/{notebook.name}"
    _clear_outputs(root / relative)  # so every execution count seen comes from this run
    proc, base, token, log = _start_lab(root, tmp_path)
    shot = tmp_path / f"jupyterlab-{notebook.stem}.png"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                pg = browser.new_page(viewport={"width": 1400, "height": 1000})
                pg.set_default_timeout(60_000)
                pg.goto(f"{base}/lab/tree/{relative}?token={token}")
                pg.locator(".jp-NotebookPanel .jp-Notebook .jp-CodeCell").first.wait_for()
                _wait_for_idle_kernel(base, token, notebook.name)
                n_code = pg.locator(".jp-Notebook .jp-CodeCell").count()
                pg.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                pg.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                deadline = time.monotonic() + RUN_TIMEOUT_S
                while True:
                    prompts = _prompts(pg)
                    done = len(prompts) == n_code and all(
                        p_.strip("[]:").isdigit() for p_ in prompts)
                    errors = [t[:500] for t in pg.locator(
                        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                    ).all_inner_texts() if "Traceback" in t]
                    if done or errors:
                        break
                    if time.monotonic() > deadline:
                        pg.screenshot(path=str(shot), full_page=True)
                        pytest.fail(f"{relative}: cells still not run after {RUN_TIMEOUT_S} s; "
                                    f"prompts {prompts}; screenshot {shot}")
                    time.sleep(1)
                pg.screenshot(path=str(shot), full_page=True)
                assert errors == [], f"{relative}: error output in JupyterLab: {errors}"
                broken = pg.eval_on_selector_all(
                    ".jp-OutputArea-output img",
                    "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).length")
                assert broken == 0, f"{relative}: {broken} output images did not render"
                expect(pg.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator"
                                  "[data-status='idle']").first).to_be_visible()
            finally:
                browser.close()
    finally:
        _stop(proc)
    return shot


@pytest.mark.skipif(not LESSON.exists(), reason="notebooks/01_loading.ipynb does not exist yet")
def test_lesson_01_runs_in_jupyterlab(tmp_path):
    shot = run_all_cells(LESSON, tmp_path)
    assert shot.stat().st_size > 0
