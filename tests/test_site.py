"""The course site (Jupyter Book 1, ``docs/build_book.py``) offline, in a real browser.

The book is built once into a temporary folder from the committed notebooks and opened
from ``file://`` in Debian's chromium through playwright, with every request that is not
``file://`` aborted and logged: every page must render with all its images, the log must
stay empty (no CDN script, font or widget manager), search must find "Hounsfield", the
sidebar must list the course pages, the lessons in order and their solutions in a part of
their own, every lesson must have its Binder and Colab launch buttons and a download link to
its own .ipynb, the bibliography must render, the widget lesson must show its static
picture, the landing page must be a page (not a redirect), and no code or output may run past
the page at 1280 px. A second build without the solutions must have none of them.

The table of contents, the pages gathered from the lessons (key points, glossary) and the
syllabus's sums are also tested without a browser.
Screenshots go to a temporary folder, or to ``docs/screenshots/`` with
``VFS_UPDATE_SCREENSHOTS=1``.
"""
from __future__ import annotations

import importlib.util
import json
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
    nbs = _touch(tmp_path / "notebooks", "01_a.ipynb", "02_b.ipynb",
                 "solutions/01_a_solutions.ipynb")
    toc = _book_module().toc(nbs)
    assert toc["root"] == "index"
    course, lessons, solutions, about = toc["parts"]
    assert [c["file"] for c in course["chapters"]] == [
        "syllabus", "setup", "classroom", "instructor_notes", "key_points", "glossary"]
    assert lessons["chapters"] == [{"file": "notebooks/01_a"}, {"file": "notebooks/02_b"}]
    assert solutions == {"caption": "Solutions",
                         "chapters": [{"file": "notebooks/solutions/01_a_solutions"}]}
    assert about["chapters"] == [{"file": "references"}]
    # without the solutions, their part is gone and nothing else changes
    assert _book_module().toc(nbs, solutions=False)["parts"] == [course, lessons, about]
    # renumbering needs no edit
    (nbs / "01_a.ipynb").rename(nbs / "03_a.ipynb")
    (nbs / "solutions" / "01_a_solutions.ipynb").rename(nbs / "solutions" / "03_a_solutions.ipynb")
    assert _book_module().toc(nbs)["parts"][1]["chapters"][-1]["file"] == "notebooks/03_a"


@NEEDS_BOOK
def test_every_course_page_of_the_toc_exists():
    for page in _book_module().COURSE_PAGES + ["index", "references"]:
        assert (REPO / "docs" / "book" / f"{page}.md").is_file(), page


def _cells(nb: Path) -> list[str]:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _bullets_after(nb: Path, heading: str) -> list[str]:
    """The '- ' items under a heading, read line by line (independent of build_book's regex)."""
    for text in _cells(nb):
        lines = text.splitlines()
        if heading not in lines:
            continue
        items = []
        for line in lines[lines.index(heading) + 1:]:
            if line.startswith("## "):
                break
            if line.startswith("- "):
                items.append(line[2:])
            elif line.startswith("  ") and items:
                items[-1] += " " + line.strip()
        return items
    return []


@NEEDS_BOOK
def test_assembled_key_points_and_glossary_carry_the_lessons_own_words(tmp_path):
    src = _book_module().assemble(tmp_path / "src", solutions=False)
    key_points = " ".join((src / "key_points.md").read_text(encoding="utf-8").split())
    assert "<!-- fill" not in key_points
    for nb in LESSONS:
        items = _bullets_after(nb, "## Key takeaways")
        assert items, f"{nb.name}: no key takeaways"
        for item in items:
            assert " ".join(item.split()) in key_points, (nb.name, item)
        assert f"(notebooks/{nb.name})" in key_points
    glossary = " ".join((src / "glossary.md").read_text(encoding="utf-8").split())
    terms = _bullets_after(NOTEBOOKS / "00_dataset.ipynb", "## Glossary")
    assert terms and all(" ".join(t.split()) in glossary for t in terms)
    # no solutions in the source of a build without them
    assert not list(src.rglob("*solutions*.ipynb"))
    assert len(list((src / "notebooks").glob("*.ipynb"))) == len(LESSONS)


def _table(text: str, header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().strip("*") for c in line.strip("|").split("|")])
    return rows


def test_syllabus_adds_up_and_quotes_the_lessons_own_estimates():
    text = (REPO / "docs" / "book" / "syllabus.md").read_text(encoding="utf-8")
    times = _table(text, "| lesson | stated")
    *lessons, total = times
    assert [r[0].split()[0] for r in lessons] == [p.name[:2] for p in LESSONS]
    for row, nb in zip(lessons, LESSONS):
        front = " ".join(_cells(nb)[1].split())
        stated = re.search(r"\*\*Estimated time:\*\* (?:about )?(\d+) minutes", front)
        assert stated and int(row[1]) == int(stated.group(1)), (nb.name, row)
    for col in (1, 2):
        assert int(total[col]) == sum(int(r[col]) for r in lessons), total
    assert float(total[3]) == pytest.approx(sum(float(r[3]) for r in lessons))
    planned = {r[0].split()[0]: int(r[2]) for r in lessons}
    for plan in ("| session | content | minutes |",):
        weeks = [_table(part, plan) for part in text.split("## ")[2:] if plan in part]
        assert len(weeks) == 2
        for rows in weeks:
            *sessions, grand = rows
            assert int(grand[2]) == sum(int(r[2]) for r in sessions)
            for r in sessions:   # the parts of a session add up to its minutes
                parts = [int(m) for m in re.findall(r"\((\d+)\)", r[1])]
                if parts:
                    assert sum(parts) == int(r[2]), r
        one_week = weeks[0]
        booked = {m.group(1): int(m.group(2)) for r in one_week[:-1]
                  for m in re.finditer(r"(\d\d) [a-z ]+\((\d+)\)", r[1])}
        assert booked == planned    # every lesson once, for its planned time


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
    expected = {"index.html", "references.html", "search.html"} | {
        f"{page}.html" for page in _book_module().COURSE_PAGES} | {
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
        if rel == "index.html":
            _screenshot(page, "site_index", tmp_path)
        if rel == "syllabus.html":
            _screenshot(page, "site_syllabus", tmp_path)
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


def _sidebar(page) -> list[tuple[str, list[str]]]:
    """[(part caption, [hrefs])] of the sidebar, in order."""
    return page.eval_on_selector_all(
        "nav.bd-docs-nav p.caption",
        """els => els.map(c => {
            const links = [];
            for (let n = c.nextElementSibling; n && !n.matches('p.caption');
                 n = n.nextElementSibling)
                n.querySelectorAll('a.reference.internal').forEach(
                    a => links.push(a.getAttribute('href')));
            return [c.innerText.trim(), links];
        })""")


@_browser_test
def test_sidebar_lists_course_lessons_and_solutions_in_their_parts(site, browser_page):
    page, _ = browser_page
    page.goto(_url(site, "index.html"), wait_until="load")
    tree = _book_module().lesson_tree(NOTEBOOKS)
    parts = dict(_sidebar(page))
    assert list(parts) == ["Course", "Lessons", "Solutions", "About"]
    assert parts["Course"] == [f"{p}.html" for p in _book_module().COURSE_PAGES]
    assert parts["Lessons"] == [f"{lesson}.html" for lesson, _ in tree]
    assert parts["Solutions"] == [f"{s}.html" for _, group in tree for s in group]


@_browser_test
def test_landing_page_is_a_page_with_the_lessons(site, browser_page):
    page, _ = browser_page
    page.goto(_url(site, "index.html"), wait_until="load")
    assert page.url.endswith("/index.html")          # no redirect
    assert page.locator("meta[http-equiv='refresh']").count() == 0
    assert page.locator("article h1").inner_text().startswith("Vertebral fractures in chest CT")
    hrefs = page.locator("article a.reference.internal").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))")
    for nb in LESSONS:
        assert f"notebooks/{nb.stem}.html" in hrefs, nb.stem
    for course_page in ("syllabus", "setup", "classroom", "instructor_notes"):
        assert f"{course_page}.html" in hrefs


#: What is cut: code, tables and pictures that reach past the article's right edge, unless a
#: box that scrolls sideways (itself or a parent inside the article) holds them and ends in it.
CUT = """article => {
    const right = article.getBoundingClientRect().right + 1;
    const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
    const out = [];
    for (const el of article.querySelectorAll('pre, .cell_output table, .cell_output img')) {
        let box = el;
        while (box !== article && !scrolls(box)) box = box.parentElement;
        const holder = box === article ? el : box;
        const wider = holder === el && el.scrollWidth > el.clientWidth + 1 && !scrolls(el);
        if (holder.getBoundingClientRect().right > right || wider)
            out.push(el.tagName + ': ' + el.innerText.slice(0, 60));
    }
    return out;
}"""


@_browser_test
@pytest.mark.parametrize("nb", LESSONS, ids=lambda p: p.stem)
def test_nothing_is_cut_at_1280_px(site, browser_page, nb, tmp_path):
    page, _ = browser_page
    page.goto(_url(site, f"notebooks/{nb.stem}.html"), wait_until="load")
    assert page.viewport_size["width"] == 1280
    assert page.eval_on_selector("article", CUT) == []
    # code wraps: no input cell scrolls sideways
    wide = page.eval_on_selector_all(
        ".cell_input pre", "els => els.filter(e => e.scrollWidth > e.clientWidth + 1).length")
    assert wide == 0
    if nb.stem == "02_matching":      # the lesson with the longest lines (an error message)
        page.locator(".cell_output pre", has_text="SeriesError").first.scroll_into_view_if_needed()
        _screenshot(page, "site_long_lines", tmp_path)


@pytest.fixture(scope="module")
def site_without_solutions(tmp_path_factory) -> Path:
    if not LESSONS:
        pytest.skip("no lessons in notebooks/ yet: nothing to render")
    work = tmp_path_factory.mktemp("book-no-solutions")
    out = work / "html"
    _book_module().build(out, work=work, solutions=False)
    return out


@_browser_test
def test_site_built_without_solutions_has_none(site_without_solutions, browser_page, tmp_path):
    page, blocked = browser_page
    site = site_without_solutions
    assert not (site / "notebooks" / "solutions").exists()
    assert not [p for p in site.rglob("*") if "solutions" in p.name]
    page.goto(_url(site, "index.html"), wait_until="load")
    parts = dict(_sidebar(page))
    assert list(parts) == ["Course", "Lessons", "About"]
    assert not any("solutions" in h for links in parts.values() for h in links)
    page.set_viewport_size({"width": 1280, "height": 1500})   # the whole sidebar in view
    try:
        page.goto(_url(site, "syllabus.html"), wait_until="load")
        _screenshot(page, "site_without_solutions", tmp_path)
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})
    assert blocked == [], sorted(set(blocked))


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
    page.goto(_url(site, "index.html"), wait_until="load")
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
