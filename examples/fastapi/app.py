"""A small FastAPI service protected by Bastion in its own process (the embedded mode).

Run it with ``uvicorn app:app`` from this folder; ``python app.py openapi`` prints the
OpenAPI document Bastion routes on (checked in as ``openapi.json``).

Bastion reads ``bastion.yaml`` beside this file: every operation of ``openapi.json`` is a
route (anything else is 404 or 405 before the application sees it), request parameters
and bodies are validated against it (400 problem+json), inputs are inspected for
injections (403), and ``POST /books`` takes an API key (``bastion keys create``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from bastion.asgi import protect

HERE = Path(__file__).resolve().parent
PUBLIC: dict[str, Any] = {"security": []}
WITH_KEY: dict[str, Any] = {"security": [{"apiKey": []}]}


class NewBook(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    author: str = Field(min_length=1, max_length=100)
    year: int = Field(ge=1450, le=2100)


class Book(NewBook):
    id: int


api = FastAPI(title="Books", version="1.0.0")
BOOKS: dict[int, Book] = {
    1: Book(id=1, title="Dune", author="Frank Herbert", year=1965),
    2: Book(id=2, title="Solaris", author="Stanislaw Lem", year=1961),
}


@api.get("/books", operation_id="listBooks", openapi_extra=PUBLIC)
async def list_books(
    q: str | None = Query(None, max_length=100), limit: int = Query(10, ge=1, le=100)
) -> list[Book]:
    """Books whose title contains ``q``."""
    found = [b for b in BOOKS.values() if q is None or q.lower() in b.title.lower()]
    return found[:limit]


@api.get("/books/{book_id}", operation_id="getBook", openapi_extra=PUBLIC)
async def get_book(book_id: int) -> Book:
    """One book."""
    book = BOOKS.get(book_id)
    if book is None:
        from fastapi import HTTPException

        raise HTTPException(404, "no such book")
    return book


@api.post("/books", operation_id="createBook", status_code=201, openapi_extra=WITH_KEY)
async def create_book(book: NewBook) -> Book:
    """Add a book (needs an API key: Bastion checks it and does not pass it on)."""
    created = Book(id=max(BOOKS) + 1, **book.model_dump())
    BOOKS[created.id] = created
    return created


def openapi() -> dict[str, Any]:
    """The application's OpenAPI document, with the API key scheme Bastion verifies."""
    doc = get_openapi(title=api.title, version=api.version, routes=api.routes)
    doc.setdefault("components", {})["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    }
    return doc


app = protect(api, config=HERE / "bastion.yaml")

if __name__ == "__main__" and sys.argv[1:] == ["openapi"]:
    print(json.dumps(openapi(), indent=2, sort_keys=True))
