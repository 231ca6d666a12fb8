"""The static course site (docs/build_site.py) in a real browser.

The site is built with ``--no-execute`` from the committed, executed notebooks (so
this stays fast; ``make site`` executes them), served on 127.0.0.1 and opened in
Debian's chromium through playwright. Every page must load, show every figure and
no error output; the index lists the lessons in order; every lesson links to its
neighbours and to Binder. The site must also work from ``file://``.

Screenshots go to a temporary folder, or to ``docs/screenshots/<page>.png`` with
``VFS_UPDATE_SCREENSHOTS=1``.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import unquote

import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS, MARKS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
BINDER = "https://mybinder.org/v2/gh/vfs-tutorials/vfs-tutorials/main?labpath="

pytestmark = MARKS

LESSONS = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
SOLUTIONS = sorted((NOTEBOOKS / "solutions").glob("*.ipynb"))
# page path in the site -> the notebook it renders
PAGES = {"index.html": None} | {f"{p.stem}.html": p for p in LESSONS} | {
    f"solutions/{p.stem}.html": p for p in SOLUTIONS}

# error outputs (and stderr streams) render with this mime type in nbconvert's lab template
STDERR = '[data-mime-type="application/vnd.jupyter.stderr"]'


def _screenshot_path(page_path: str, tmp_dir: Path) -> Path:
    name = page_path.removesuffix(".html").replace("/", "_") + ".png"
    if os.environ.get("VFS_UPDATE_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name
    return tmp_dir / name


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not LESSONS:
        pytest.skip("no lessons in notebooks/ yet: nothing to render")
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import build_site
    finally:
        sys.path.remove(str(REPO / "docs"))
    out = tmp_path_factory.mktemp("site") / "_site"
    build_site.build(out, NOTEBOOKS, execute=False)
    return out


@pytest.fixture(scope="module")
def base_url(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page that may only load local resources; external requests are aborted and kept."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    external: list[tuple[str, str]] = []

    def route(r):
        url = r.request.url
        if url.startswith(("http://127.0.0.1", "file://", "data:")):
            r.continue_()
        else:
            external.append((r.request.resource_type, url))
            r.abort()

    context.route("**/*", route)
    pg = context.new_page()
    pg.external_requests = external
    yield pg
    context.close()


def _check_rendered(pg) -> None:
    """Figures loaded, no error output shown, no external image requested."""
    problems = []
    broken = pg.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0))"
               ".map(e => e.src.slice(0, 80))")
    if broken:
        problems.append(f"images that did not load: {broken}")
    errors = [t[:300] for t in pg.locator(STDERR).all_inner_texts()
              if "Traceback" in t or re.search(r"^\w+(Error|Exception)\b", t, re.M)]
    if errors:
        problems.append(f"error output shown: {errors}")
    images = [u for kind, u in pg.external_requests if kind == "image"]
    if images:
        problems.append(f"external images requested: {images}")
    assert problems == [], f"{pg.url}: " + "; ".join(problems)


@pytest.mark.parametrize("page_path", list(PAGES))
def test_page_loads_with_figures_and_no_errors(page, base_url, page_path, tmp_path):
    response = page.goto(base_url + page_path, wait_until="load")
    assert response is not None and response.status == 200
    _check_rendered(page)
    page.screenshot(path=str(_screenshot_path(page_path, tmp_path)), full_page=True)


@pytest.mark.parametrize("notebook", LESSONS + SOLUTIONS, ids=lambda p: p.stem)
def test_committed_notebooks_hold_no_error_output(notebook):
    nb = json.loads(notebook.read_text())
    errors = [(i, o.get("ename")) for i, cell in enumerate(nb["cells"])
              for o in cell.get("outputs", []) if o["output_type"] == "error"]
    assert errors == [], f"{notebook.name}: error outputs in cells {errors}"


def _first_heading(notebook: Path) -> str:
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    return re.sub(r"[*_`]", "", line.lstrip("#").strip())
    return notebook.stem


def test_index_lists_lessons_in_order(page, base_url):
    page.goto(base_url + "index.html")
    hrefs = page.eval_on_selector_all("a.vfs-lesson", "els => els.map(e => e.getAttribute('href'))")
    assert hrefs == [f"{p.stem}.html" for p in LESSONS]
    titles = page.locator("a.vfs-lesson").all_inner_texts()
    assert titles == [_first_heading(p) for p in LESSONS]
    solutions = page.eval_on_selector_all("a.vfs-solution",
                                          "els => els.map(e => e.getAttribute('href'))")
    assert sorted(set(solutions)) == sorted(f"solutions/{p.stem}.html" for p in SOLUTIONS)
    text = page.inner_text("body")
    for needle in ["10.1007/978-3-030-59725-2_70", "10.1016/j.media.2022.102646",
                   "RU 2018620500", "Problems of Endocrinology 66(5)", "CC BY-NC 4.0", "MIT"]:
        assert needle in text


@pytest.mark.parametrize("index", range(len(LESSONS)), ids=[p.stem for p in LESSONS])
def test_lesson_links_neighbours_and_binder(page, base_url, index):
    lesson = LESSONS[index]
    page.goto(f"{base_url}{lesson.stem}.html")
    prev = f"{LESSONS[index - 1].stem}.html" if index else "index.html"
    nxt = f"{LESSONS[index + 1].stem}.html" if index + 1 < len(LESSONS) else "index.html"
    top = page.locator("nav.vfs-top")
    assert top.locator("a.vfs-prev").get_attribute("href") == prev
    assert top.locator("a.vfs-next").get_attribute("href") == nxt
    badge = top.locator("a.vfs-binder")
    assert badge.is_visible()
    href = badge.get_attribute("href")
    assert href.startswith(BINDER) and unquote(href[len(BINDER):]) == f"notebooks/{lesson.name}"
    # following "next" really lands on the next page
    top.locator("a.vfs-next").click()
    assert page.url == base_url + nxt


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_links_back_and_to_binder(page, base_url, solution):
    page.goto(f"{base_url}solutions/{solution.stem}.html")
    badge = page.locator("nav.vfs-top a.vfs-binder").get_attribute("href")
    assert unquote(badge[len(BINDER):]) == f"notebooks/solutions/{solution.name}"
    back = page.locator("nav.vfs-top a.vfs-lesson")
    if back.count():
        back.click()
        assert page.url.startswith(base_url) and page.url.endswith(".html")
        assert page.locator("a.vfs-solution").count() >= 1


def test_site_works_from_file_urls(page, site):
    page.goto((site / "index.html").as_uri())
    page.locator("a.vfs-lesson").first.click()
    page.wait_for_load_state("load")
    assert page.url == (site / f"{LESSONS[0].stem}.html").as_uri()
    _check_rendered(page)
    page.locator("nav.vfs-top a.vfs-prev").click()  # the first lesson's "previous" is the index
    assert page.url == (site / "index.html").as_uri()
