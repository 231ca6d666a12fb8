"""The course site (Jupyter Book 1, ``docs/build_book.py``) offline, in a real browser.

The book is built once into a temporary folder from the committed notebooks and opened
from ``file://`` in Debian's chromium through playwright, with every request that is not
``file://`` aborted and logged: every page must render with all its images, the log must
stay empty (no CDN script, font or widget manager), search must find "Hounsfield", the
sidebar must list the lessons in order with their solutions under them, every lesson must
have its Binder and Colab launch buttons and a download link to its own .ipynb, the
bibliography must render, and the widget lesson must show its static picture.

The table of contents is also tested without a browser, on synthetic folders.
Screenshots go to a temporary folder, or to ``docs/screenshots/`` with
``VFS_UPDATE_SCREENSHOTS=1``.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS, MARKS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
LESSONS = sorted(p for p in NOTEBOOKS.glob("[0-9]*.ipynb"))
SOLUTIONS = sorted((NOTEBOOKS / "solutions").glob("*.ipynb"))
with open(REPO / "pyproject.toml", "rb") as _fh:
    OWNER_REPO = tomllib.load(_fh)["project"]["urls"]["Source"].removeprefix(
        "https://github.com/").rstrip("/")

NEEDS_BOOK = pytest.mark.skipif(importlib.util.find_spec("jupyter_book") is None,
                                reason="jupyter-book is not installed (pip install -e '.[site]')")
STDERR = '[data-mime-type="application/vnd.jupyter.stderr"]'


def _book_module():
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import build_book
    finally:
        sys.path.remove(str(REPO / "docs"))
    return build_book


# --- the table of contents, on synthetic folders ----------------------------------------

def _touch(folder: Path, *names: str) -> Path:
    (folder / "solutions").mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("{}")
    return folder


@NEEDS_BOOK
def test_toc_orders_lessons_by_number_and_nests_their_solutions(tmp_path):
    nbs = _touch(tmp_path / "notebooks", "10_ten.ipynb", "02_two.ipynb", "04a_split.ipynb",
                 "04b_split.ipynb", "00_start.ipynb", "sanitize.cfg", "scratch.ipynb",
                 "solutions/02_two_solutions.ipynb", "solutions/04b_split_solutions.ipynb",
                 "solutions/04a_split_solutions.ipynb", "solutions/10_other_solutions.ipynb",
                 "solutions/99_orphan_solutions.ipynb")
    tree = _book_module().lesson_tree(nbs)
    assert tree == [
        ("notebooks/00_start", []),
        ("notebooks/02_two", ["notebooks/solutions/02_two_solutions"]),
        ("notebooks/04a_split", ["notebooks/solutions/04a_split_solutions"]),
        ("notebooks/04b_split", ["notebooks/solutions/04b_split_solutions"]),
        ("notebooks/10_ten", ["notebooks/solutions/10_other_solutions"]),  # by number
        ("notebooks/solutions/99_orphan_solutions", []),
    ]


@NEEDS_BOOK
def test_toc_file_follows_the_notebooks_found(tmp_path):
    nbs = _touch(tmp_path / "notebooks", "01_a.ipynb", "solutions/01_a_solutions.ipynb")
    toc = _book_module().toc(nbs)
    assert toc["root"] == "intro"
    lessons, about = toc["parts"]
    assert lessons["chapters"] == [{"file": "notebooks/01_a",
                                    "sections": [{"file": "notebooks/solutions/01_a_solutions"}]}]
    assert about["chapters"] == [{"file": "references"}]
    # renumbering needs no edit
    (nbs / "01_a.ipynb").rename(nbs / "03_a.ipynb")
    (nbs / "solutions" / "01_a_solutions.ipynb").rename(nbs / "solutions" / "03_a_solutions.ipynb")
    assert _book_module().toc(nbs)["parts"][0]["chapters"][0]["file"] == "notebooks/03_a"


# --- the built site in chromium, network blocked ---------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not LESSONS:
        pytest.skip("no lessons in notebooks/ yet: nothing to render")
    work = tmp_path_factory.mktemp("book")
    out = work / "html"
    _book_module().build(out, work=work)
    return out


@pytest.fixture(scope="module")
def browser_page(site):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a loaded machine is slower, never flakier
    blocked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def only_files(route):
            if route.request.url.startswith(("file://", "data:", "blob:")):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        context.on("request", lambda r: None if r.url.startswith(("file://", "data:", "blob:"))
                   else blocked.append(r.url))
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page, blocked
        browser.close()


def _url(site: Path, rel: str) -> str:
    return (site / rel).as_uri()


def _screenshot(page, name: str, tmp_path: Path) -> None:
    if os.environ.get("VFS_UPDATE_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"))
    else:
        page.screenshot(path=str(tmp_path / f"{name}.png"))


def _pages(site: Path) -> list[str]:
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if "_static" not in p.parts)


def _browser_test(fn):
    for mark in [*MARKS, NEEDS_BOOK]:
        fn = mark(fn)
    return fn


@_browser_test
def test_every_page_renders_offline_with_its_images(site, browser_page, tmp_path):
    from playwright.sync_api import expect

    page, blocked = browser_page
    pages = _pages(site)
    expected = {"intro.html", "references.html", "search.html"} | {
        f"notebooks/{p.stem}.html" for p in LESSONS} | {
        f"notebooks/solutions/{p.stem}.html" for p in SOLUTIONS}
    assert expected <= set(pages), f"pages missing: {sorted(expected - set(pages))}"
    for rel in pages:
        page.goto(_url(site, rel), wait_until="load")
        expect(page.locator("main#main-content")).to_be_visible()
        broken = page.eval_on_selector_all(
            "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)")
        assert broken == [], f"{rel}: images that did not load: {broken}"
        errors = page.locator(f"article {STDERR}").all_inner_texts()
        assert not [e for e in errors if "Traceback" in e], f"{rel}: error output {errors}"
        if rel == "notebooks/01_loading.html":
            _screenshot(page, "site_lesson", tmp_path)
        if rel == "intro.html":
            _screenshot(page, "site_index", tmp_path)
    assert blocked == [], f"requests that would have left the machine: {sorted(set(blocked))}"


@_browser_test
def test_search_finds_hounsfield_offline(site, browser_page, tmp_path):
    from playwright.sync_api import expect

    page, blocked = browser_page
    page.goto(_url(site, "search.html") + "?q=Hounsfield", wait_until="load")
    results = page.locator("#search-results ul.search li")
    expect(results.first).to_be_visible()
    hrefs = results.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert any("01_loading" in h for h in hrefs), hrefs
    _screenshot(page, "site_search", tmp_path)
    assert blocked == [], sorted(set(blocked))


@_browser_test
def test_sidebar_lists_lessons_in_order_with_solutions_nested(site, browser_page):
    page, _ = browser_page
    page.goto(_url(site, "intro.html"), wait_until="load")
    tree = _book_module().lesson_tree(NOTEBOOKS)
    links = page.locator("nav.bd-docs-nav a.reference.internal").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))")
    expected = []
    for lesson, solutions in tree:
        expected += [f"{lesson}.html", *[f"{s}.html" for s in solutions]]
    assert [h for h in links if h.startswith("notebooks/")] == expected
    for lesson, solutions in tree:
        for sol in solutions:
            # the solution's list item sits inside its lesson's list item
            nested = page.locator(f'li:has(> a[href="{lesson}.html"]) a[href="{sol}.html"]')
            assert nested.count() == 1, f"{sol} is not under {lesson} in the sidebar"


@_browser_test
@pytest.mark.parametrize("nb", LESSONS + SOLUTIONS, ids=lambda p: p.stem)
def test_launch_buttons_and_download_point_at_the_notebook(site, browser_page, nb):
    page, _ = browser_page
    rel = nb.relative_to(REPO).as_posix()
    page.goto(_url(site, rel.replace(".ipynb", ".html")), wait_until="load")
    hrefs = page.locator("a").evaluate_all("els => els.map(e => e.href)")
    assert (f"https://mybinder.org/v2/gh/{OWNER_REPO}/main?urlpath=lab/tree/"
            f"{quote(rel)}") in hrefs
    assert f"https://colab.research.google.com/github/{OWNER_REPO}/blob/main/{rel}" in hrefs
    download = [h for h in hrefs if h.startswith("file://") and h.endswith(nb.name)]
    assert download, f"{rel}: no download link to {nb.name}"
    downloaded = Path(re.sub(r"^file://", "", download[0]))
    assert downloaded.read_bytes() == nb.read_bytes()


@_browser_test
def test_bibliography_renders_the_dataset_citations(site, browser_page):
    from playwright.sync_api import expect

    page, _ = browser_page
    page.goto(_url(site, "references.html"), wait_until="load")
    entries = page.locator("div.citation, .bibtex div[role='doc-biblioentry'], dl.citation > dt")
    expect(entries.first).to_be_visible()
    text = page.locator("article").inner_text()
    for needle in ("Keypoints localization", "anchor-free landmarks", "Tagged results of lung",
                   "vertebral compression fractures"):
        assert needle.lower() in text.lower(), needle
    # the landing page's citations link into the bibliography
    page.goto(_url(site, "intro.html"), wait_until="load")
    cites = page.locator("article a[href*='references.html#']")
    expect(cites.first).to_be_visible()


@_browser_test
@pytest.mark.skipif(not (NOTEBOOKS / "03_visualization.ipynb").exists(),
                    reason="the widget lesson 03_visualization is not there")
def test_widget_lesson_shows_its_static_picture(site, browser_page):
    page, _ = browser_page
    page.goto(_url(site, "notebooks/03_visualization.html"), wait_until="load")
    article = page.locator("article")
    assert "SliceBrowser(" not in article.inner_text()
    assert page.locator("script[type='application/vnd.jupyter.widget-view+json']").count() == 0
    section = page.locator("section", has=page.locator("h2", has_text="Browsing the slices"))
    assert section.locator(".cell_output img").count() >= 2  # the widget's picture + static
