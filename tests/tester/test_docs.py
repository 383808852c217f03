"""Consumer documentation: content derived from config and OpenAPI, and spec text always escaped."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bastion.config import load_config
from bastion.tester.docs import build_site, render_html, render_markdown
from tests.tester.util import baseline

EVIL = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def site_for(tmp_path: Path, api: dict[str, object], listen: str = "{host: 127.0.0.1, port: 8443}") -> str:
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(api, sort_keys=False))
    (tmp_path / "bastion.yaml").write_text(
        f"listen: {listen}\nservices:\n  - {{name: things, upstream: 'http://127.0.0.1:9001', openapi: api.yaml}}\n"
    )
    return str(tmp_path / "bastion.yaml")


def evil_api() -> dict[str, object]:
    api = baseline()
    op = api["paths"]["/things/{thingId}"]["get"]
    op["description"] = EVIL
    op["summary"] = "<b>bold</b>"
    api["info"]["title"] = "Things </title><script>x()</script>"
    return api


def test_html_escapes_spec_text(tmp_path: Path) -> None:
    """A <script> in an operation's description (or title) is shown as text, never emitted as markup."""
    page = render_html(build_site(load_config(site_for(tmp_path, evil_api()))))
    assert "<script>" not in page and "<img" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in page


def test_html_is_self_contained(tmp_path: Path) -> None:
    """The page loads nothing from elsewhere: inline CSS, no scripts, no external links or images."""
    page = render_html(build_site(load_config(site_for(tmp_path, baseline()))))
    assert "<style>" in page and "<script" not in page
    assert not re.search(r"<(link|img|iframe)\b", page)
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_markdown_escapes_html(tmp_path: Path) -> None:
    """Markdown viewers render raw HTML, so spec text is HTML-escaped in index.md too."""
    md = render_markdown(build_site(load_config(site_for(tmp_path, evil_api()))))
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_operations_auth_and_curl(tmp_path: Path) -> None:
    """Each operation lists its schemes and a curl example that sends the credential from a shell variable,
    with path parameters filled in and a JSON body for writes."""
    site = build_site(load_config(site_for(tmp_path, baseline())))
    ops = {(o.method, o.path): o for o in site.operations}
    get = ops[("GET", "/things/{thingId}")]
    assert not get.public and [a.schemes for a in get.auth] == [("apiKey",)]
    assert get.curl == (
        'curl -sS -H "X-API-Key: $API_KEY" http://127.0.0.1:8443/things/0b7f1c2e-8d4a-4f6b-9c3e-5a1d2e3f4a5b'
    )
    post = ops[("POST", "/things")]
    assert "-X POST" in post.curl and '--data \'{"name":"string"}\'' in post.curl
    assert site.base_url == "http://127.0.0.1:8443" and site.notes  # plain HTTP is called out


def test_public_operations_and_limits(tmp_path: Path) -> None:
    """Public operations need no credentials in the example; limits and error statuses are listed."""
    api = baseline()
    api["paths"]["/things/{thingId}"]["get"]["security"] = []
    site = build_site(load_config(site_for(tmp_path, api, "{host: 0.0.0.0, port: 80}")), base_url=None)
    get = next(o for o in site.operations if o.method == "GET")
    assert get.public and "X-API-Key" not in get.curl and site.base_url == "http://localhost"
    assert [e.status for e in site.errors] == [400, 401, 403, 404, 405, 413, 429, 502, 503, 504]
    md = render_markdown(site)
    assert "| GET | [`/things/{thingId}`]" in md and "| public |" in md
    assert "Largest request body" in md and "10 MiB" in md
    assert "encoded slashes (%2F)" in md and "Rotation:" in md


def test_operations_the_gateway_refuses_or_delegates_say_so(tmp_path: Path) -> None:
    """An operation answered 401 because nothing verifies its credentials is marked not available
    (table, section and a note), so the guide does not promise what the gateway refuses; a
    delegated one says the API checks the credentials."""
    path = site_for(tmp_path, baseline())
    # Nothing verifies credentials: Bastion's API keys (on by default) are off.
    Path(path).write_text("policies: {auth: {api_keys: {enabled: false}}}\n" + Path(path).read_text())
    md = render_markdown(build_site(load_config(path)))
    assert "| apiKey (not available yet: 401) |" in md
    assert "- **Not available yet:** the gateway answers every request with 401" in md
    assert "2 operation(s) require authentication this gateway cannot verify yet" in md
    html = render_html(build_site(load_config(path)))
    assert "<strong>Not available yet:</strong>" in html
    delegated = "openapi: api.yaml, policies: {auth: {delegate: upstream}}}"
    text = Path(path).read_text().replace("openapi: api.yaml}", delegated)
    Path(path).write_text(text)
    site = build_site(load_config(path))
    assert {o.gateway_auth for o in site.operations} == {"delegated"}
    md = render_markdown(site)
    assert "(not available yet: 401)" not in md and "**Not available yet:**" not in md
    assert "- Credentials are checked by the API itself, not by the gateway." in md
