"""``bastion docs``: security documentation for an API's consumers."""

from bastion.tester.docs.model import Site, build_site
from bastion.tester.docs.render import render_html, render_markdown, write_site

__all__ = ["Site", "build_site", "render_html", "render_markdown", "write_site"]
