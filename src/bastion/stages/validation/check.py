"""The per-request check of the ``validation`` stage: a request against its compiled operation.

Kept apart from the stage class (``stage.py``) so it can be compiled with mypyc: every
validated request runs this code, from the hook (:meth:`Checker.on_request`) the chain
calls directly.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Final

from bastion.stages.validation.body import BodyError, media_type, parse_form, parse_json, parse_multipart
from bastion.stages.validation.compiled import CompiledOperation
from bastion.stages.validation.config import ValidationConfig
from bastion.stages.validation.messages import Problem, json_path, name_ref, quote, rule_of
from bastion.stages.validation.params import (
    Param,
    ParamError,
    decode_cookie,
    decode_header,
    decode_path,
    decode_query,
    parse_cookies,
    parse_query,
)
from bastion.types import Block, Exchange, Request

#: Most problems recorded for the access log.
MAX_LOGGED: Final = 20
#: The stage's name: where its findings go in ``exchange.facts``.
STAGE_NAME: Final = "validation"
#: Most query parameters read (the URL length limit bounds them too).
MAX_QUERY_FIELDS: Final = 1000
#: Operations without a request body remember the parameters of the valid requests they
#: saw (query string, path parameters, the headers and cookies they declare): a repeated
#: search, page or item is valid again without decoding and validating. One memory per
#: worker, shared by every operation: at most this many entries and characters in all
#: (however many operations a document has); full, it starts over.
MEMORY_ENTRIES: Final = 8192
MEMORY_CHARS: Final = 1 << 20


class _Memory:
    """The valid parameter sets remembered, each keyed by its operation."""

    def __init__(self) -> None:
        self.valid: set[tuple[str, ...]] = set()
        self.chars = 0
        self.operations = 0

    def remember(self, key: tuple[str, ...]) -> None:
        chars = 0
        for part in key:
            chars += len(part)
        if len(self.valid) >= MEMORY_ENTRIES or self.chars + chars > MEMORY_CHARS:
            self.valid.clear()
            self.chars = 0
        self.valid.add(key)
        self.chars += chars


_MEMORY: Final = _Memory()


class Unsupported:
    """The request's body is of a media type the operation does not accept (a 415)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class Checker:
    """One operation's rules, applied to requests."""

    def __init__(self, config: ValidationConfig, operation: CompiledOperation) -> None:
        self.op = operation
        self._allow_repeat = config.allow_repeated_params
        self._reject_unknown = config.reject_unknown_query_params
        self._max_depth = config.max_json_depth
        self._reject_duplicates = config.reject_duplicate_keys
        self._max_problems = config.max_problems
        # Validity is a function of the parameters alone only without a body to check.
        self._remembers = operation.media is None
        self._declared_headers = frozenset(p.key for p in operation.params.get("header", ()))
        self._declares_cookies = "cookie" in operation.params
        _MEMORY.operations += 1
        self._token = str(_MEMORY.operations)  # this operation's part of every key

    def on_request(self, exchange: Exchange) -> Block | None:
        """The stage's request hook: ``None`` for a valid request, else its refusal (400, or
        415 for a media type the operation does not accept)."""
        found = self.check(exchange.request)
        if found is None:
            return None
        if isinstance(found, Unsupported):
            return self._unsupported(exchange, found.why)
        return self._block(exchange, found)

    def _block(self, exchange: Exchange, problems: list[Problem]) -> Block:
        exchange.facts[STAGE_NAME] = [p.as_dict() for p in problems[:MAX_LOGGED]]
        shown = "; ".join(str(p) for p in problems[: self._max_problems])
        more = len(problems) - self._max_problems
        if more > 0:
            shown += f" (and {more} more)"
        return Block(400, "Bad Request", shown, reason=f"validation.{problems[0].kind}")

    def _unsupported(self, exchange: Exchange, why: str) -> Block:
        accepted = ", ".join(sorted(self.op.media or ())) or "none"
        detail = f"{why}; expected one of: {accepted}"
        exchange.facts[STAGE_NAME] = [{"location": "header 'content-type'", "rule": detail}]
        return Block(415, "Unsupported Media Type", detail, reason="validation.content_type")

    @property
    def remembered(self) -> int:
        """How many valid parameter sets of this operation are remembered."""
        return sum(1 for key in _MEMORY.valid if key[0] == self._token)

    def check(self, request: Request) -> list[Problem] | Unsupported | None:
        """``None`` for a valid request; else what is wrong with it.

        A JSON body, once parsed, is left on the request (``parsed_json``) for detection.
        """
        key: tuple[str, ...] | None = None
        if self._remembers:
            key = self._key(request)
            if key in _MEMORY.valid:
                self._vouch(request)
                return None
        found = self._check(request)
        if found is None:
            if key is not None:
                _MEMORY.remember(key)
            self._vouch(request)
        return found

    def _key(self, request: Request) -> tuple[str, ...]:
        """Everything a bodiless request's validity depends on."""
        parts = [self._token, request.query]
        for name, value in request.path_params.items():
            parts.append(name)
            parts.append(value)
        if self._declared_headers or self._declares_cookies:
            for name, value in request.headers:
                if name in self._declared_headers or (self._declares_cookies and name == "cookie"):
                    parts.append(name)
                    parts.append(value)
        return tuple(parts)

    def _vouch(self, request: Request) -> None:
        """What the schemas proved inert, detection need not inspect again."""
        op = self.op
        request.inert_headers = op.inert_headers
        if op.inert_path and request.raw_target.partition("?")[0] == request.path:
            request.inert_path = True  # the path sent is exactly the one validated

    def _check(self, request: Request) -> list[Problem] | Unsupported | None:
        op = self.op
        problems: list[Problem] = []
        instance: dict[str, Any] = {}
        params = op.params
        if params:
            path_params = params.get("path")
            if path_params is not None:
                instance["path"] = _path(op, path_params, request.path_params, problems)
            query_params = params.get("query")
            if query_params is not None or self._reject_unknown:
                instance["query"] = self._query(op, query_params or (), request.query, problems)
            header_params = params.get("header")
            if header_params is not None:
                instance["header"] = _headers(op, header_params, request.headers, problems)
            cookie_params = params.get("cookie")
            if cookie_params is not None:
                instance["cookie"] = _cookies(op, cookie_params, request.headers, problems)
        elif self._reject_unknown and request.query:
            self._query(op, (), request.query, problems)
        validator: Any = op.params_validator
        if op.media is not None:
            body = request.body
            if body:
                content_type = request.header("content-type")
                if content_type is None:
                    return Unsupported("the request has a body but no Content-Type")
                media, media_params = media_type(content_type)
                found = op.match(media)
                if found is None:
                    shown = quote(media)
                    what = f"Content-Type {shown}" if shown else "the Content-Type"
                    return Unsupported(f"{what} is not accepted here")
                if found.validator is not None:
                    try:
                        if found.kind == "json":
                            value = parse_json(body, self._max_depth, self._reject_duplicates)
                            request.parsed_json = (value,)  # detection reuses it
                            instance["body"] = value
                        elif found.kind == "form":
                            instance["body"] = parse_form(body, found.shape, found.explode)
                        else:
                            instance["body"] = parse_multipart(body, media_params, found.shape)
                    except BodyError as exc:
                        problems.append(Problem("body", str(exc), exc.kind))
                    validator = found.validator
            elif op.body_required:
                problems.append(Problem("body", "a request body is required", "body_missing"))
        if not problems and validator.is_valid(instance):
            return None
        for error in islice(validator.iter_errors(instance), MAX_LOGGED):
            problems.append(_problem(op, error))
        return problems

    def _query(self, op: CompiledOperation, params: tuple[Param, ...], query: str,
               problems: list[Problem]) -> dict[str, Any]:
        parsed: dict[str, list[str]] = {}
        if query:
            try:
                parsed = parse_query(query, MAX_QUERY_FIELDS)
            except UnicodeDecodeError:
                problems.append(Problem("query", "the query string is not valid percent-encoded UTF-8", "query"))
                return {}
            except ParamError as exc:
                problems.append(Problem("query", str(exc), "query"))
                return {}
        out: dict[str, Any] = {}
        for p in params:
            try:
                present, value = decode_query(p, parsed, self._allow_repeat)
            except ParamError as exc:
                problems.append(Problem(op.label("query", p.key), str(exc), "query"))
                continue
            if present:
                out[p.key] = value
        if self._reject_unknown and parsed:
            known, prefixes = op.known_query, op.known_query_prefixes
            unknown = [n for n in parsed if n not in known and not (prefixes and n.startswith(prefixes))]
            for name in unknown[:MAX_LOGGED]:
                problems.append(Problem(f"query parameter {name_ref(name)}", "is not declared by the operation",
                                        "unknown_query"))
        return out


def _path(op: CompiledOperation, params: tuple[Param, ...], given: dict[str, str],
          problems: list[Problem]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in params:
        text = given.get(p.name)
        if text is None:
            continue  # the schema's "required" reports it
        try:
            out[p.key] = decode_path(p, text)
        except ParamError as exc:
            problems.append(Problem(op.label("path", p.key), str(exc), "path"))
    return out


def _headers(op: CompiledOperation, params: tuple[Param, ...], headers: list[tuple[str, str]],
             problems: list[Problem]) -> dict[str, Any]:
    wanted = {p.key for p in params}
    found: dict[str, list[str]] = {}
    for name, value in headers:
        if name in wanted:
            found.setdefault(name, []).append(value)
    out: dict[str, Any] = {}
    for p in params:
        values = found.get(p.key)
        if values is None:
            continue
        try:
            out[p.key] = decode_header(p, values)
        except ParamError as exc:
            problems.append(Problem(op.label("header", p.key), str(exc), "header"))
    return out


def _cookies(op: CompiledOperation, params: tuple[Param, ...], headers: list[tuple[str, str]],
             problems: list[Problem]) -> dict[str, Any]:
    jar = parse_cookies(headers)
    out: dict[str, Any] = {}
    for p in params:
        text = jar.get(p.name)
        if text is None:
            continue
        try:
            out[p.key] = decode_cookie(p, text)
        except ParamError as exc:
            problems.append(Problem(op.label("cookie", p.key), str(exc), "cookie"))
    return out


def _problem(op: CompiledOperation, error: Any) -> Problem:
    path = list(error.instance_path)
    rule = rule_of(error)
    if not path:
        return Problem("request", rule, "body")
    location = str(path[0])
    rest = path[1:]
    if location == "body":
        return Problem("body " + json_path(rest), rule, "body")
    if not rest:
        kind = error.kind
        if type(kind).__name__ == "Required":
            return Problem(op.label(location, str(kind.as_dict().get("property"))), "is required", location)
        return Problem(location, rule, location)
    where = op.label(location, str(rest[0]))
    if len(rest) > 1:
        where += " " + json_path(rest[1:])
    return Problem(where, rule, location)
