"""Render a :class:`Site` as Markdown (index.md) and self-contained HTML (index.html).

Both go through Jinja2. The HTML environment autoescapes every value, so text from an
OpenAPI document (a description with ``<script>`` in it) is shown, never run. The
Markdown output escapes HTML too, because Markdown viewers render raw HTML.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from jinja2 import DictLoader, Environment, StrictUndefined

from bastion.tester.docs.model import Site, human_size
from bastion.tester.docs.templates import HTML, MARKDOWN


def md_text(text: object) -> str:
    """Text for Markdown: HTML escaped, so a viewer shows it instead of rendering it."""
    return html.escape(str(text), quote=False)


def md_cell(text: object) -> str:
    """Text for a Markdown table cell: escaped, on one line, pipes escaped."""
    return md_text(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_fence(text: object) -> str:
    """A code fence longer than any run of backticks inside ``text``."""
    runs = [len(m) for m in re.findall(r"`+", str(text))]
    return "`" * max(3, max(runs, default=0) + 1)


def _environment(autoescape: bool) -> Environment:
    # The Markdown template escapes spec text itself (the `md`, `mdcell` filters): HTML
    # autoescaping would turn quotes in the curl examples into entities inside code blocks.
    env = Environment(
        loader=DictLoader({"index.md": MARKDOWN, "index.html": HTML}),
        autoescape=autoescape,  # noqa: S701
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(size=human_size, md=md_text, mdcell=md_cell, fence=md_fence)
    return env


def render_markdown(site: Site) -> str:
    return _environment(autoescape=False).get_template("index.md").render(site=site)


def render_html(site: Site) -> str:
    return _environment(autoescape=True).get_template("index.html").render(site=site)


def write_site(site: Site, out_dir: Path) -> list[Path]:
    """Write index.md and index.html into ``out_dir`` (created if needed); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / "index.md", out_dir / "index.html"
    md.write_text(render_markdown(site), encoding="utf-8")
    page.write_text(render_html(site), encoding="utf-8")
    return [md, page]
