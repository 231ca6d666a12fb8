"""Render the lessons as a static HTML course site (``make site``).

Usage::

    python docs/build_site.py --out _site            # execute every notebook, then render
    python docs/build_site.py --out _site --no-execute   # render the committed outputs

The site is a folder of self-contained pages (CSS inlined, figures embedded as
data URIs, relative links only), so it works from ``file://`` as well as over
HTTP:

- ``index.html``: the lessons in order, each with its title (the notebook's first
  markdown heading) and the first sentence after it, links to the solutions, the
  citations and the licences;
- ``<lesson>.html``: one page per ``notebooks/NN_*.ipynb``, with previous/next
  links and a Binder badge that opens the notebook on mybinder.org;
- ``solutions/<name>.html``: one page per ``notebooks/solutions/*.ipynb``,
  linked from the lesson with the same number.

Notebooks are executed in memory with nbclient (the files on disk are not
changed), from their own folder, with the ``python3`` kernel.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jinja2
import nbformat
from nbconvert import HTMLExporter

__all__ = ["Page", "binder_url", "build", "collect", "main", "notebook_heading"]

REPO = Path(__file__).resolve().parents[1]
BINDER = "https://mybinder.org/v2/gh/vfs-tutorials/vfs-tutorials/main"
SOURCE = "https://github.com/vfs-tutorials/vfs-tutorials"

CITATIONS = [
    "Pisov M. et al. (2020) Keypoints Localization for Joint Vertebra Detection and Fracture "
    "Severity Quantification. MICCAI 2020, LNCS 12266. doi:10.1007/978-3-030-59725-2_70",
    "Zakharov A., Pisov M. et al. (2023) Interpretable vertebral fracture quantification via "
    "anchor-free landmarks localization. Medical Image Analysis 83. "
    "doi:10.1016/j.media.2022.102646",
    "Morozov S.P. et al. (2018) Tagged results of lung computed tomography scans "
    "(RU 2018620500).",
    "Petraikin A.V. et al. (2020) Artificial intelligence for diagnosis of vertebral compression "
    "fractures using a morphometric analysis model, based on convolutional neural networks. "
    "Problems of Endocrinology 66(5):45-57.",
]

LICENCE_NOTE = (
    "The expert annotations are licensed CC BY-NC 4.0 by their authors (cite the papers "
    "above); the lessons download them at pinned commits and never redistribute them. "
    "The code and the lessons are licensed MIT."
)

# "launch | binder" badge drawn inline: the site loads no external images.
BINDER_BADGE = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="109" height="20" role="img" '
    'aria-label="launch binder"><title>launch binder</title>'
    '<rect width="64" height="20" rx="3" fill="#555"/>'
    '<rect x="60" width="49" height="20" rx="3" fill="#579aca"/>'
    '<rect x="60" width="4" height="20" fill="#579aca"/>'
    '<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
    '<text x="8" y="14">launch</text><text x="66" y="14">binder</text></g></svg>'
)

SITE_CSS = """
.vfs-nav { display: flex; flex-wrap: wrap; gap: 0.5em 1.5em; align-items: center;
  font-family: var(--jp-ui-font-family, sans-serif); font-size: 14px;
  padding: 8px 16px; margin: 0 0 8px 0; background: #f3f5f7; border-bottom: 1px solid #d0d7de; }
.vfs-nav.vfs-bottom { border-top: 1px solid #d0d7de; border-bottom: none; margin: 16px 0 0 0; }
.vfs-nav a { color: #0b5cad; text-decoration: none; }
.vfs-nav a:hover { text-decoration: underline; }
.vfs-nav .vfs-binder { margin-left: auto; line-height: 0; }
"""

INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 52em;
  margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #1f2328; }
a { color: #0b5cad; }
ol.vfs-lessons > li { margin-bottom: 1em; }
ol.vfs-lessons .vfs-summary { margin: 0.2em 0; }
.vfs-links { font-size: 0.9em; }
.vfs-links a { margin-right: 1em; }
.vfs-binder { line-height: 0; vertical-align: middle; }
footer { margin-top: 3em; font-size: 0.85em; color: #57606a; }
"""

# The lab template, plus the navigation bars; external scripts only where needed.
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}
{%- if "widgets" in nb.metadata -%}{{ super() }}{%- endif -%}
{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}
{%- if resources.vfs.math -%}{{ super() }}{%- endif -%}
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}<style type="text/css">{{ resources.vfs.css }}</style>{% endblock extra_css %}
{%- block body_header -%}
{{ super() }}
{{ resources.vfs.nav_top }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.vfs.nav_bottom }}
{{ super() }}
{% endblock body_footer %}
"""

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_MATH = re.compile(r"\$[^$\n]+\$|\\\(|\\\[|\\begin\{")


@dataclass
class Page:
    """One notebook of the site.

    Attributes
    ----------
    notebook : Path
        The ``.ipynb`` file.
    href : str
        The page's path inside the site (POSIX, relative to its root).
    title : str
        Plain-text title (first markdown heading, else the file name).
    summary : str
        First sentence after the heading, as inline HTML ("" when there is none).
    repo_path : str
        The notebook's path in the repository (``notebooks/...``), for the Binder link.
    solutions : list of Page
        Solution pages of a lesson.
    """

    notebook: Path
    href: str
    title: str
    summary: str
    repo_path: str
    solutions: list["Page"] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return self.notebook.stem


def _plain(markdown: str) -> str:
    """Markdown inline text -> plain text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"(\*\*|__|\*|_|`)(.+?)\1", r"\2", text)
    return re.sub(r"\s+", " ", text).strip()


def _inline_html(markdown: str) -> str:
    """Markdown inline text -> HTML: code, strong, emphasis; links become their text."""
    text = html.escape(re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown), quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"<strong>\2</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?!\w)", r"<em>\1</em>", text)
    return re.sub(r"\s+", " ", text).strip()


def _first_sentence(paragraph: str) -> str:
    match = re.match(r"(.+?[.!?])(?=\s|$)", paragraph, flags=re.S)
    return (match.group(1) if match else paragraph).strip()


def notebook_heading(nb: nbformat.NotebookNode) -> tuple[str | None, str]:
    """The first markdown heading and the first sentence of the paragraph after it.

    Returns
    -------
    title : str or None
        Plain text of the heading, None when the notebook has no markdown heading.
    summary : str
        Inline HTML of the first sentence ("" when no paragraph follows the heading).
    """
    title = None
    paragraph: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            heading = _HEADING.match(line)
            if title is None:
                if heading:
                    title = _plain(heading.group(2))
                continue
            if heading or (not line.strip() and paragraph):
                if paragraph:
                    break
                continue
            if line.strip() and not line.lstrip().startswith(("<", "|", "```", "![")):
                paragraph.append(line.strip().lstrip(">").strip())
        else:
            if title is not None and paragraph:
                break
            continue
        break
    summary = _inline_html(_first_sentence(" ".join(paragraph))) if paragraph else ""
    return title, summary


def binder_url(repo_path: str) -> str:
    """The mybinder.org link that opens the notebook at ``repo_path`` in JupyterLab.

    ``repo_path`` is the notebook's POSIX path in the repository, e.g.
    ``"notebooks/01_loading.ipynb"``.
    """
    return f"{BINDER}?labpath={quote(repo_path, safe='')}"


def _number(stem: str) -> str | None:
    match = re.match(r"(\d+)", stem)
    return match.group(1) if match else None


def collect(notebook_dir: Path) -> tuple[list[Page], list[Page]]:
    """The lessons (``NN_*.ipynb``, in order) and the solution pages of ``notebook_dir``.

    A solution belongs to the lesson whose number starts its file name.
    """
    lessons, solutions = [], []
    for path in sorted(notebook_dir.glob("[0-9]*.ipynb")):
        title, summary = notebook_heading(nbformat.read(path, as_version=4))
        lessons.append(Page(path, f"{path.stem}.html", title or path.stem, summary,
                            f"notebooks/{path.name}"))
    by_number = {_number(p.stem): p for p in lessons}
    for path in sorted((notebook_dir / "solutions").glob("*.ipynb")):
        title, summary = notebook_heading(nbformat.read(path, as_version=4))
        page = Page(path, f"solutions/{path.stem}.html", title or f"Solutions: {path.stem}",
                    summary, f"notebooks/solutions/{path.name}")
        solutions.append(page)
        lesson = by_number.get(_number(path.stem))
        if lesson is not None:
            lesson.solutions.append(page)
    return lessons, solutions


def _execute(nb: nbformat.NotebookNode, path: Path, timeout: int, kernel: str) -> None:
    from nbclient import NotebookClient

    # A non-interactive MPLBACKEND (the Makefile exports Agg) would reach the kernel and
    # stop matplotlib's inline figures: let the kernel choose its own backend.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)


def _link(href: str, text: str, cls: str, prefix: str) -> str:
    return f'<a class="{cls}" href="{prefix}{href}">{html.escape(text)}</a>'


def _badge(page: Page) -> str:
    return (f'<a class="vfs-binder" href="{html.escape(binder_url(page.repo_path))}" '
            f'title="Open this notebook on mybinder.org">{BINDER_BADGE}</a>')


def _nav(page: Page, prev: tuple[str, str], nxt: tuple[str, str], lesson: Page | None,
         bottom: bool) -> str:
    """Navigation bar; ``prev``/``nxt`` are (href, label), ``lesson`` is a solution's lesson."""
    prefix = "../" if "/" in page.href else ""
    items = []
    if lesson is not None:
        items.append(_link(lesson.href, f"← Back to the lesson: {lesson.title}", "vfs-lesson",
                           prefix))
    else:
        items.append(_link(prev[0], f"← {prev[1]}", "vfs-prev", prefix))
    if lesson is not None or "index.html" not in (prev[0], nxt[0]):
        items.append(_link("index.html", "Course index", "vfs-index", prefix))
    for sol in page.solutions:
        items.append(_link(sol.href, f"Solutions: {sol.title}" if len(page.solutions) > 1
                           else "Solutions", "vfs-solution", prefix))
    if lesson is None:
        items.append(_link(nxt[0], f"{nxt[1]} →", "vfs-next", prefix))
    if not bottom:
        items.append(_badge(page))
    cls = "vfs-nav vfs-bottom" if bottom else "vfs-nav vfs-top"
    return f'<nav class="{cls}">' + "".join(items) + "</nav>"


def _exporter() -> HTMLExporter:
    loader = jinja2.DictLoader({"vfs_page.html.j2": PAGE_TEMPLATE})
    return HTMLExporter(template_name="lab", template_file="vfs_page.html.j2",
                        extra_loaders=[loader], embed_images=True)


def _render(exporter: HTMLExporter, nb: nbformat.NotebookNode, page: Page, nav_top: str,
            nav_bottom: str) -> str:
    has_math = any(c.cell_type == "markdown" and _MATH.search(c.source) for c in nb.cells)
    nb.metadata["title"] = page.title
    resources = {
        "metadata": {"name": page.title, "path": str(page.notebook.parent)},
        "vfs": {"math": has_math, "css": SITE_CSS, "nav_top": nav_top, "nav_bottom": nav_bottom},
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


def _index(lessons: list[Page], solutions: list[Page]) -> str:
    items = []
    for page in lessons:
        links = [f'<a href="{page.href}">Read</a>']
        links += [f'<a class="vfs-solution" href="{s.href}">{html.escape(s.title)}</a>'
                  for s in page.solutions]
        links.append(_badge(page))
        summary = f'<p class="vfs-summary">{page.summary}</p>' if page.summary else ""
        items.append(f'<li><a class="vfs-lesson" href="{page.href}">{html.escape(page.title)}'
                     f'</a>{summary}<div class="vfs-links">{"".join(links)}</div></li>')
    orphans = [s for s in solutions if not any(s in p.solutions for p in lessons)]
    extra = ""
    if orphans:
        extra = ("<h2>More solutions</h2><ul>" + "".join(
            f'<li><a class="vfs-solution" href="{s.href}">{html.escape(s.title)}</a></li>'
            for s in orphans) + "</ul>")
    cites = "".join(f"<li>{html.escape(c)}</li>" for c in CITATIONS)
    first = _badge(lessons[0]) if lessons else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>vfs-tutorials: vertebral fractures in chest CT</title>
<style>{INDEX_CSS}</style>
</head>
<body>
<header>
<h1>vfs-tutorials</h1>
<p>Lessons on the expert vertebral-fracture annotations of the MosMed CTLungCa-500 chest CT
series: loading DICOM and annotations, matching them, measuring vertebrae and scaling out.
Run them in your browser {first} or locally (<code>make demo</code>).</p>
</header>
<main>
<h2>Lessons</h2>
<ol class="vfs-lessons">
{"".join(items)}
</ol>
{extra}
<h2 id="cite">Cite</h2>
<ul class="vfs-citations">{cites}</ul>
<h2 id="licence">Licence</h2>
<p class="vfs-licence">{html.escape(LICENCE_NOTE)}</p>
</main>
<footer>Source: <a href="{SOURCE}">{SOURCE}</a></footer>
</body>
</html>
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build(out: Path, notebook_dir: Path = REPO / "notebooks", *, execute: bool = True,
          timeout: int = 300, kernel: str = "python3", log=None) -> list[Path]:
    """Render the course site into ``out`` (replaced as a whole once every page is done).

    Returns
    -------
    list of Path
        The pages written, index first.
    """
    lessons, solutions = collect(notebook_dir)
    if not lessons:
        raise FileNotFoundError(f"no lessons (NN_*.ipynb) in {notebook_dir}: nothing to render")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        exporter = _exporter()
        written = [staging / "index.html"]
        _write(written[0], _index(lessons, solutions))
        home = ("index.html", "Course index")
        for i, page in enumerate(lessons):
            prev = (lessons[i - 1].href, f"Previous: {lessons[i - 1].title}") if i else home
            nxt = ((lessons[i + 1].href, f"Next: {lessons[i + 1].title}")
                   if i + 1 < len(lessons) else (home[0], "Back to the course index"))
            todo = [(page, _nav(page, prev, nxt, None, False), _nav(page, prev, nxt, None, True))]
            todo += [(s, _nav(s, prev, nxt, page, False), _nav(s, prev, nxt, page, True))
                     for s in page.solutions]
            for item, top, bottom in todo:
                written.append(_page(exporter, item, top, bottom, staging, execute, timeout,
                                     kernel, log))
        for sol in solutions:
            if not any(sol in p.solutions for p in lessons):
                back = (home[0], "Back to the course index")
                written.append(_page(exporter, sol, _nav(sol, home, back, None, False),
                                     _nav(sol, home, back, None, True), staging, execute,
                                     timeout, kernel, log))
        if out.exists():
            old = out.with_name(f".{out.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / p.relative_to(staging) for p in written]


def _page(exporter, page, nav_top, nav_bottom, staging, execute, timeout, kernel, log) -> Path:
    nb = nbformat.read(page.notebook, as_version=4)
    if execute:
        if log:
            log(f"executing {page.notebook}")
        _execute(nb, page.notebook, timeout, kernel)
    target = staging / page.href
    _write(target, _render(exporter, nb, page, nav_top, nav_bottom))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "_site", help="site folder to write")
    parser.add_argument("--notebooks", type=Path, default=REPO / "notebooks",
                        help="folder of the lessons (with solutions/ inside)")
    parser.add_argument("--no-execute", dest="execute", action="store_false",
                        help="render the outputs stored in the notebooks instead of executing")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    args = parser.parse_args(argv)
    try:
        pages = build(args.out, args.notebooks, execute=args.execute, timeout=args.timeout,
                      kernel=args.kernel, log=lambda msg: print(msg, flush=True))
    except Exception as exc:  # report, do not dump a traceback for expected failures
        from nbclient.exceptions import CellExecutionError

        if not isinstance(exc, (FileNotFoundError, CellExecutionError)):
            raise
        print(f"build_site: {exc}", file=sys.stderr)
        return 1
    print(f"{len(pages)} pages in {Path(args.out).resolve()}; open "
          f"{(Path(args.out).resolve() / 'index.html').as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
