"""A real GraphQL server for the gateway tests: graphql-core's executor behind an HTTP
server on loopback, speaking what GraphQL servers speak (JSON single and batched,
``application/graphql``, ``GET ?query=``) and counting login attempts, so a test can tell
whether an attack reached it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from graphql import build_schema, graphql_sync

SDL = """
type Query {
  me: User
  user(id: ID!): User
  users(first: Int): [User!]!
}
type User {
  id: ID!
  name: String!
  friends(first: Int): [User!]!
}
type Mutation {
  login(user: String!, password: String!): String
  deleteUser(id: ID!): Boolean
}
"""
SCHEMA = build_schema(SDL)
USERS = [{"id": str(i), "name": f"user{i}"} for i in range(5)]


class GraphQLUpstream:
    """The server; :attr:`logins` counts the login resolver's calls, :attr:`bodies` holds
    every request body (or query string) it received."""

    def __init__(self) -> None:
        self.logins = 0
        self.deleted: list[str] = []
        self.bodies: list[str] = []
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                query = urlsplit(self.path).query
                upstream.note(query)
                params = {k: v[0] for k, v in parse_qs(query).items()}
                variables = json.loads(params["variables"]) if params.get("variables") else None
                self.answer(upstream.execute({"query": params.get("query", ""), "variables": variables}))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                upstream.note(raw)
                if self.headers.get("content-type", "").startswith("application/graphql"):
                    self.answer(upstream.execute({"query": raw}))
                    return
                payload = json.loads(raw)
                if isinstance(payload, list):
                    self.answer([upstream.execute(item) for item in payload])
                else:
                    self.answer(upstream.execute(payload))

            def answer(self, result: object) -> None:
                body = json.dumps(result).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def note(self, body: str) -> None:
        with self._lock:
            self.bodies.append(body)

    def saw(self, marker: str) -> bool:
        with self._lock:
            return any(marker in body for body in self.bodies)

    def execute(self, payload: dict[str, Any]) -> dict[str, Any]:
        result = graphql_sync(SCHEMA, payload.get("query", ""), root_value=self._root(),
                              variable_values=payload.get("variables"))
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [error.formatted for error in result.errors]
        return out

    def _root(self) -> dict[str, Any]:
        upstream = self

        def login(_info: Any, user: str, password: str) -> str | None:
            with upstream._lock:
                upstream.logins += 1
            return "token" if (user, password) == ("admin", "correct horse") else None

        def delete_user(_info: Any, id: str) -> bool:
            upstream.deleted.append(id)
            return True

        def user(_info: Any, id: str) -> dict[str, Any]:
            return _with_friends(USERS[int(id) % len(USERS)])

        def users(_info: Any, first: int | None = None) -> list[dict[str, Any]]:
            return [_with_friends(u) for u in USERS[: first or len(USERS)]]

        return {"me": lambda _info: _with_friends(USERS[0]), "user": user, "users": users, "login": login,
                "deleteUser": delete_user}

    def __enter__(self) -> GraphQLUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _with_friends(user: dict[str, Any]) -> dict[str, Any]:
    """A user whose ``friends`` resolve to more users (as deep as a query asks)."""
    return {**user, "friends": lambda _info, first=None: [_with_friends(u) for u in USERS[: first or 2]]}
