"""The ``response`` stage's hook: on the whole body of each upstream response, in order:

1. an upstream 5xx is masked (``errors: mask``): its body, which may hold a stack trace or
   an SQL error, is replaced by problem+json with the request ID; a truncated copy goes to
   the exchange's record only;
2. on an operation with ``uniform_failures``, a failure (4xx, or a 2xx whose body matches
   ``match_body``) is replaced by the one configured answer, and every answer waits until
   ``min_latency`` has passed since the request head;
3. a status the operation does not declare is recorded or refused (``undeclared_status``);
4. a JSON body loses the members its schema does not declare (``schema``), its ``writeOnly``
   members and every ``never_return`` one.

What it did goes to ``exchange.facts["response"]`` (counts and property paths, never values).
Bastion's own answers (a stage's refusal or answer) are left alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import orjson

from bastion.errors import PolicyError, problem_response
from bastion.pipeline.stage import ResponseOutcome, ResponseStage, RouteInfo
from bastion.stages.response.config import ResponseConfig, UniformFailures
from bastion.stages.response.conform import Proof, proof_for
from bastion.stages.response.prune import Keep, NeverReturn, Removal, prune, remove_pointer
from bastion.stages.response.schema import ResponseSchemas, is_json, response_schemas
from bastion.stages.validation.body import duplicate_key
from bastion.stages.validation.schema import SchemaError
from bastion.types import Block, Decision, Exchange, HeaderList, Response

#: Headers that describe the upstream's body and must not describe a changed one.
_STALE = frozenset(("content-length", "etag", "content-md5", "digest"))
#: Headers of a masked 5xx worth keeping: they say when to retry, not what failed.
_KEPT_ON_MASK = frozenset(("retry-after",))
_MASKED_DETAIL = "The upstream service failed; quote the request ID when reporting it."
_NO_BODY = frozenset((204, 304))


class ResponseFilterStage(ResponseStage):
    """Filters, masks and equalises one route's upstream responses."""

    needs_response_body = True

    def __init__(self, config: ResponseConfig, schemas: ResponseSchemas | None) -> None:
        super().__init__("response", config)
        self.settings = config
        self.names = _names(config)
        if schemas is not None and schemas.never_return != self.names:
            # The walk looks these names up only for undeclared members: a tree that still
            # declares one would let it out.
            raise ValueError("the response schemas were built for other never_return names")
        self.schemas = schemas
        pointers: list[tuple[str, ...]] = []
        for entry in config.never_return:
            if entry.startswith("/"):
                pointers.append(tuple(p.replace("~1", "/").replace("~0", "~") for p in entry[1:].split("/")))
        self._never_return = NeverReturn(self.names)
        self.pointers = tuple(pointers)
        #: The names as bytes: a body that holds none of them (and has no schema) is not parsed.
        self._needles = tuple(n.encode() for n in self.names) + tuple(p[-1].lower().encode() for p in self.pointers)
        #: A pointer ending in ``*`` names whatever is there: no byte search can rule it out.
        self._always_parse = any(p[-1] == "*" for p in self.pointers)
        #: Shadow mode (``enforce: false``): everything is decided and recorded, nothing sent
        #: differs from what the upstream sent.
        self._enforce = config.enforce
        # Read on every response: plain attributes, not the settings model's (whose reads go
        # through pydantic's __getattr__ hook, ~330 instructions each).
        self._mask_errors = config.errors == "mask"
        self._schema_mode = config.schema_
        self.uniform = config.uniform_failures
        self._uniform_body = b"" if self.uniform is None else orjson.dumps(self.uniform.body)
        self._uniform_headers: HeaderList = [] if self.uniform is None else _uniform_headers(self.uniform)
        self._match = tuple(t.encode() for t in self.uniform.match_body) if self.uniform is not None else ()
        self._clock = time.perf_counter
        #: Each tree's proof that a body loses nothing (see :mod:`.conform`); none with
        #: ``never_return`` pointers, which only the parsed document can follow.
        self._proofs: dict[Keep, Proof] = {} if self.pointers else _proofs(schemas)

    @classmethod
    def from_config(cls, config: ResponseConfig, route: RouteInfo) -> ResponseFilterStage:
        schemas = None
        if route.operation is not None:
            try:
                schemas = response_schemas(route.operation, route.openapi or {}, _names(config))
            except SchemaError as exc:
                raise PolicyError(str(exc)) from None
        return cls(config, schemas)

    def on_response(self, exchange: Exchange) -> ResponseOutcome | Awaitable[ResponseOutcome]:
        response = exchange.response
        if response is None or not _from_upstream(exchange):
            return None
        outcome = self._inspect(exchange, response)
        if self._enforce and self.uniform is not None and self.uniform.min_latency > 0:
            wait = self.uniform.min_latency - (self._clock() - exchange.started)
            if wait > 0:
                return _pad(wait, outcome)
        return outcome

    def _inspect(self, exchange: Exchange, response: Response) -> Block | None:
        status = response.status
        if status >= 500 and self._mask_errors:
            self._mask(exchange, response)
            return None
        uniform = self.uniform
        if uniform is not None and self._is_failure(response):
            _fact(exchange)["uniform"] = status
            if self._enforce:
                exchange.response = Response(uniform.status, list(self._uniform_headers), self._uniform_body)
                return None
        schemas = self.schemas
        keep: Keep | None = None
        if schemas is not None:
            if not schemas.declares(status):
                refused = self._undeclared(exchange, status)
                if refused is not None:
                    return refused
            else:
                keep = schemas.keep_for(status)
        if self._schema_mode == "off":
            keep = None
        body = response.body
        if not body or status in _NO_BODY or exchange.request.method == "HEAD":
            return None
        if not _json_response(response):
            # A body the schema describes as JSON came as something else: nothing can be
            # filtered from it, so 'block' refuses it and 'filter' records it.
            return None if keep is None else self._not_json(exchange)
        if keep is None and not self._mentions_hidden(body):
            return None  # nothing to filter by schema, and no name that never leaves: not parsed
        if keep is not None:
            proof = self._proofs.get(keep)
            if proof is not None and proof.conforms(body):
                return None  # the walk would remove nothing: not parsed, not walked
        return self._filter(exchange, response, body, keep)

    # -- schema filtering and the names that never leave ------------------------------------
    def _mentions_hidden(self, body: bytes) -> bool:
        if self._always_parse:
            return True
        lowered = body.lower()
        return any(needle in lowered for needle in self._needles)

    def _filter(self, exchange: Exchange, response: Response, body: bytes, keep: Keep | None) -> Block | None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None if keep is None else self._not_json(exchange)
        mode = self._schema_mode
        removal = Removal(apply=mode == "filter")
        prune(doc, keep if keep is not None else _ANY_SCHEMA, self._never_return, removal)
        for pointer in self.pointers:
            remove_pointer(doc, pointer, removal)
        if removal.undeclared:
            facts = _fact(exchange)
            facts["undeclared"] = removal.undeclared
            facts["paths"] = removal.paths
            if mode == "block":
                return Block(
                    502,
                    "Bad Gateway",
                    "The upstream's response does not match the API's description.",
                    reason="response.undeclared_property",
                )
            if mode == "monitor":
                exchange.decisions.append(Decision(self.name, "monitor", "response.undeclared_property"))
        if removal.hidden:
            _fact(exchange)["hidden"] = removal.hidden
        changed = bool(removal.hidden) or bool(removal.undeclared and removal.apply)
        if self._enforce and not changed:
            # orjson keeps a repeated member's last copy, so the walk never saw the earlier
            # ones: the tree it checked is clean, the upstream's bytes may not be (a first
            # copy holding an undeclared member). Send the tree that was checked. (A body the
            # proof accepts is sent as it came: the proof checks every copy.)
            repeated = duplicate_key(body, doc)
            if repeated is not None:
                _fact(exchange)["duplicate_key"] = repeated
                changed = True
        if self._enforce and changed:
            response.body = orjson.dumps(doc)
            response.headers = [(k, v) for k, v in response.headers if k not in _STALE]
        return None

    def _not_json(self, exchange: Exchange) -> Block | None:
        _fact(exchange)["not_json"] = True
        if self.settings.schema_ != "block":
            return None
        return Block(
            502,
            "Bad Gateway",
            "The upstream's response does not match the API's description.",
            reason="response.not_json",
        )

    def _undeclared(self, exchange: Exchange, status: int) -> Block | None:
        policy = self.settings.undeclared_status
        if policy == "pass":
            return None
        _fact(exchange)["undeclared_status"] = status
        if policy == "monitor":
            exchange.decisions.append(Decision(self.name, "monitor", "response.undeclared_status", status))
            return None
        return Block(
            502,
            "Bad Gateway",
            "The upstream answered with a status the API does not declare.",
            reason="response.undeclared_status",
        )

    # -- error masking and uniform failures ------------------------------------------------
    def _mask(self, exchange: Exchange, response: Response) -> None:
        kept = self.settings.error_body_kept
        original: dict[str, object] = {"status": response.status}
        content_type = response.header("content-type")
        if content_type is not None:
            original["content_type"] = content_type
        body = response.body or b""
        if kept and body:
            original["body"] = body[:kept].decode("utf-8", "replace")
            original["truncated"] = len(body) > kept
        _fact(exchange)["masked"] = original
        if not self._enforce:
            return
        extra = [(k, v) for k, v in response.headers if k in _KEPT_ON_MASK]
        exchange.response = problem_response(response.status, _MASKED_DETAIL, exchange.request_id, headers=extra)

    def _is_failure(self, response: Response) -> bool:
        status = response.status
        if 400 <= status < 500:
            return True
        if 200 <= status < 300 and self._match:
            body = response.body or b""
            return any(text in body for text in self._match)
        return False


#: The walk for a response without a schema: only the names that never leave.
_ANY_SCHEMA = Keep()


def _names(config: ResponseConfig) -> frozenset[str]:
    """The ``never_return`` entries that are property names (not pointers), lower case."""
    return frozenset(entry.lower() for entry in config.never_return if not entry.startswith("/"))


def _proofs(schemas: ResponseSchemas | None) -> dict[Keep, Proof]:
    """A proof for each of the operation's trees that can have one."""
    if schemas is None:
        return {}
    trees = [*schemas.exact.values(), *schemas.ranges.values(), schemas.default]
    proofs: dict[Keep, Proof] = {}
    for keep in trees:
        if keep is not None and keep not in proofs:
            proof = proof_for(keep)
            if proof is not None:
                proofs[keep] = proof
    return proofs


def _from_upstream(exchange: Exchange) -> bool:
    """Whether the response is the upstream's, not a stage's refusal or answer."""
    if exchange.blocked_by:
        return False
    for decision in exchange.decisions:  # noqa: SIM110 - a loop, not all(): no generator per response
        if decision.action == "answer":
            return False
    return True


#: Content-Type values already judged, and whether each is JSON (an upstream sends one or
#: two); bounded, forgotten all at once when full.
_JSON_TYPES: dict[str, bool] = {}
_MAX_JSON_TYPES = 64


def _json_response(response: Response) -> bool:
    content_type = response.header("content-type")
    if content_type is None:
        return False
    known = _JSON_TYPES.get(content_type)
    if known is None:
        known = is_json(content_type.split(";", 1)[0].strip().lower())
        if len(_JSON_TYPES) >= _MAX_JSON_TYPES:
            _JSON_TYPES.clear()
        _JSON_TYPES[content_type] = known
    return known


def _fact(exchange: Exchange) -> dict[str, object]:
    facts = exchange.facts.get("response")
    if not isinstance(facts, dict):
        facts = {}
        exchange.facts["response"] = facts
    return facts


def _uniform_headers(uniform: UniformFailures) -> HeaderList:
    headers: HeaderList = [("content-type", "application/json")]
    headers = [(k, v) for k, v in headers if k not in uniform.headers]
    headers.extend(uniform.headers.items())
    if "cache-control" not in uniform.headers:
        headers.append(("cache-control", "no-store"))
    return headers


async def _pad(seconds: float, outcome: Block | None) -> Block | None:
    """Wait out the rest of the operation's minimum latency, then decide as decided."""
    await asyncio.sleep(seconds)
    return outcome
