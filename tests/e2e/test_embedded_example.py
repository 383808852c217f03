"""examples/fastapi: the FastAPI application behind ``bastion.asgi.protect``, served by a real
uvicorn on a free port, as docs/embedded.md tells a user to run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fastapi"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The example copied to a folder of its own (its store and pepper go there), run with
    ``uvicorn app:app`` from it; yields the base URL and the folder."""
    folder = tmp_path_factory.mktemp("fastapi-example")
    for name in ("app.py", "bastion.yaml", "openapi.json"):
        shutil.copy(EXAMPLE / name, folder / name)
    with (folder / "bastion.yaml").open("a") as config:
        config.write("access_log: {path: access.log}\n")
    port = free_port()
    log = (folder / "uvicorn.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"uvicorn exited: {(folder / 'uvicorn.log').read_text()}")
            try:
                httpx.get(url + "/books", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not answer: {(folder / 'uvicorn.log').read_text()}")
                time.sleep(0.1)
        yield url, folder
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _problem(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == status
    assert body["request_id"] == resp.headers["x-request-id"]
    return dict(body)


def test_allowed_request_reaches_the_application(served: tuple[str, Path]) -> None:
    """A request the OpenAPI document allows is answered by FastAPI, with Bastion's request ID
    and security headers added on the way out."""
    url, _ = served
    resp = httpx.get(url + "/books", params={"q": "dune"})
    assert resp.status_code == 200
    assert resp.json() == [{"title": "Dune", "author": "Frank Herbert", "year": 1965, "id": 1}]
    assert len(resp.headers["x-request-id"]) == 32
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_validation_refuses_before_the_application(served: tuple[str, Path]) -> None:
    """A parameter out of the document's bounds and a body missing required properties are
    Bastion's 400 problem+json naming the field, not FastAPI's 422."""
    url, _ = served
    body = _problem(httpx.get(url + "/books", params={"limit": "0"}), 400)
    assert "limit" in str(body["detail"])
    body = _problem(httpx.get(url + "/books/abc"), 400)
    assert "book_id" in str(body["detail"])


def test_injection_is_refused(served: tuple[str, Path]) -> None:
    """An SQL injection in a search string the document accepts is refused by detection (403)."""
    url, _ = served
    _problem(httpx.get(url + "/books", params={"q": "' OR 1=1--"}), 403)


def test_deny_by_default(served: tuple[str, Path]) -> None:
    """A path the document does not declare is 404, a method it does not list is 405 with
    Allow: neither reaches FastAPI (whose own answers would be JSON, not problem+json)."""
    url, _ = served
    _problem(httpx.get(url + "/docs"), 404)
    _problem(httpx.get(url + "/openapi.json"), 404)
    resp = httpx.delete(url + "/books/1")
    _problem(resp, 405)
    assert resp.headers["allow"] == "GET, HEAD"


def test_api_key_guards_the_write_operation(served: tuple[str, Path]) -> None:
    """``POST /books`` needs an API key: without one 401, with a key made by ``bastion keys
    create`` (on the same bastion.yaml) the book is created; a valid key with an invalid body
    is still 400 (authentication first, then validation); the access log records the consumer."""
    url, folder = served
    book = {"title": "Neuromancer", "author": "William Gibson", "year": 1984}
    _problem(httpx.post(url + "/books", json=book), 401)
    made = subprocess.run(
        [sys.executable, "-m", "bastion", "keys", "create", "librarian", "-c", "bastion.yaml"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("bst_")
    deadline = time.monotonic() + 10
    while True:  # the workers' key snapshot refreshes within a second
        resp = httpx.post(url + "/books", json=book, headers={"X-API-Key": key})
        if resp.status_code != 401 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert resp.status_code == 201, resp.text
    assert resp.json()["title"] == "Neuromancer"
    _problem(httpx.post(url + "/books", json={"title": "x"}, headers={"X-API-Key": key}), 400)
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in (folder / "access.log").read_text().splitlines()]
        created = [r for r in lines if r["route"] == "createBook" and r["status"] == 201]
        if created or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert created and created[0]["consumer"]
