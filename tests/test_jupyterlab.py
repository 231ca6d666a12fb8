"""Lesson 01 runs top to bottom in a real JupyterLab, driven through its menus.

A JupyterLab server (from this environment) serves a copy of notebooks/ in a
temporary folder, so nothing in the checkout is modified or saved. Chromium opens
the first lesson, clicks Run -> Run All Cells and waits until every code cell has an
execution count; no cell may show an error. A screenshot goes to the temporary folder.

Nothing here sleeps for a time: the server is ready when it prints its URL (read from
its output as it comes), the kernel when JupyterLab's execution indicator says idle,
and the run when the page shows every prompt numbered (playwright's waits).
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
import threading
from pathlib import Path

import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS, MARKS

REPO = Path(__file__).resolve().parents[1]
LESSON = REPO / "notebooks" / "01_loading.ipynb"
RUN_TIMEOUT_S = 600  # a shared, loaded machine; the lesson takes ~10 s alone
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


def _wait_for_url(proc: subprocess.Popen, log: Path, port: int) -> None:
    """Read the server's output until it prints its URL; then keep copying it to ``log``.

    A timer kills the server after START_TIMEOUT_S, which ends the read.
    """
    timer = threading.Timer(START_TIMEOUT_S, proc.kill)
    timer.start()
    seen = []
    out = open(log, "wb", buffering=0)  # unbuffered: the log is current; closed by the copier
    try:
        for line in iter(proc.stdout.readline, b""):
            out.write(line)
            seen.append(line.decode(errors="replace"))
            if f"127.0.0.1:{port}/lab" in seen[-1]:
                break
        else:
            out.close()
            pytest.fail(f"jupyter lab exited (or took over {START_TIMEOUT_S} s) before it "
                        f"served on port {port}:\n{''.join(seen)[-3000:]}")
    finally:
        timer.cancel()

    def copy_rest() -> None:
        with out:
            for rest in iter(proc.stdout.readline, b""):
                out.write(rest)

    threading.Thread(target=copy_rest, daemon=True).start()


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
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_url(proc, log, port)
    except BaseException:
        _stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}", token, log


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


# true when every code cell has a numbered prompt, or when a cell shows a traceback
_RUN_FINISHED = """n => {
  const prompts = [...document.querySelectorAll(
      '.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
      .map(e => e.textContent.replace(/[\\s\\[\\]:]/g, ''));
  const done = prompts.length === n && prompts.every(p => /^[0-9]+$/.test(p));
  const failed = [...document.querySelectorAll(
      ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
      .some(e => e.textContent.includes('Traceback'));
  return done || failed;
}"""


def _prompts(pg) -> list[str]:
    return pg.eval_on_selector_all(
        ".jp-Notebook .jp-CodeCell .jp-InputArea-prompt",
        "els => els.map(e => e.textContent.trim())")


def run_all_cells(notebook: Path, tmp_path: Path) -> Path:
    """Open a copy of ``notebook`` (and its folder) in JupyterLab and run every cell.

    Returns the screenshot path. Fails when a cell errors or the run takes too long.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
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
                # the status bar says "Python 3 (ipykernel) | Idle" once the kernel is
                # connected and idle (before that: Starting, Connecting, Unknown)
                expect(pg.get_by_text(re.compile(r"\(ipykernel\) \| Idle$")).first
                       ).to_be_visible(timeout=START_TIMEOUT_S * 1000)
                # from the file: JupyterLab may still be adding cells to the page
                n_code = sum(c["cell_type"] == "code" for c in
                             json.loads((root / relative).read_text())["cells"])
                pg.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                pg.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                try:
                    pg.wait_for_function(_RUN_FINISHED, arg=n_code, polling=500,
                                         timeout=RUN_TIMEOUT_S * 1000)
                except PlaywrightTimeout:
                    pg.screenshot(path=str(shot), full_page=True)
                    pytest.fail(f"{relative}: cells still not run after {RUN_TIMEOUT_S} s; "
                                f"prompts {_prompts(pg)}; screenshot {shot}")
                errors = [t[:500] for t in pg.locator(
                    ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                ).all_inner_texts() if "Traceback" in t]
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
