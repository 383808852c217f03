"""What a stage is.

A stage is a small object built once per route from its validated config. It takes part
in the request-head phase by subclassing :class:`HeadStage`, in the request phase by
subclassing :class:`RequestStage`, in the response phase by subclassing
:class:`ResponseStage` (the head, or the whole body) and :class:`ResponseBodyStage` (the
body in bounded pieces as it streams), or in several. The abstract methods make a misspelt hook a
load-time error instead of a hook that is silently never called.

Hooks are plain functions that return their decision. A hook that must wait for I/O
(Redis, a JWKS endpoint) returns an awaitable instead -- typically by calling one of its
own ``async def`` methods -- and the proxy awaits it. Pure checks (most of them) thus
cost a function call, not a trip through the event loop.

A stage has two lives. Its *compile* step (``StageSpec.build``) turns settings into the
stage object in every process that loads the configuration -- the supervisor, ``bastion
check``, the tester -- so it is pure: no sockets, no tasks, errors raised as config
errors. Only a worker then *starts* it (:meth:`Stage.start`, with the worker's
:class:`~bastion.services.Services`) before it serves a request, and *closes* it
(:meth:`Stage.close`) when it serves no more: after a reload replaced it, or when the
worker stops. Stages without I/O keep the no-op defaults.

The chain takes each hook once, when it is built (:meth:`HeadStage.head_hook` and its
siblings): by default the stage's own method; a stage whose per-request work lives in a
compiled object hands that object's method instead, so calling the hook runs no
interpreted code (the stage classes themselves stay interpreted).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from bastion.types import Block, Exchange, Response

if TYPE_CHECKING:
    from bastion.services import Services


class StageConfig(BaseModel):
    """Settings every stage has, beside its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fields a stage still accepts but no longer documents: field -> what replaces it. The
    #: loader warns (file, line, field) wherever one is set; the stage maps it itself.
    deprecated_fields: ClassVar[dict[str, str]] = {}
    #: Fields (as written in the file) that name a file: the loader resolves a relative one
    #: against the folder of the file that sets it, before the stage validates it.
    file_fields: ClassVar[tuple[str, ...]] = ()
    #: Values of ``file_fields`` that are words, not files (``schema: introspect``).
    file_keywords: ClassVar[frozenset[str]] = frozenset()

    enabled: bool = Field(True, description="Run this stage on the route at all.")
    enforce: bool = Field(
        True,
        description="False is shadow mode: the stage decides and logs, but never blocks.",
    )
    failure_mode: Literal["closed", "open"] = Field(
        "closed",
        description=(
            "What happens when the stage itself fails (an exception, an unreachable "
            "dependency): 'closed' denies the request (500/503), 'open' lets it through. "
            "Either way the failure is logged and counted."
        ),
    )
    timeout: float = Field(
        1.0,
        gt=0,
        le=60,
        description=(
            "Seconds a hook that waits for I/O (Redis, a key or token endpoint) may take before "
            "the stage counts as failed (a DependencyUnavailable under 'failure_mode': 503 when "
            "closed). Hooks that answer at once are never timed."
        ),
    )


#: What a request hook decides: continue (None), refuse (Block) or answer (Response).
RequestOutcome: TypeAlias = Block | Response | None
#: What a response hook decides: keep the (possibly changed) response (None) or replace it.
ResponseOutcome: TypeAlias = Block | None
#: A head or request hook as the chain calls it (see :meth:`HeadStage.head_hook`).
RequestHook: TypeAlias = Callable[[Exchange], RequestOutcome | Awaitable[RequestOutcome]]
#: A response hook as the chain calls it (see :meth:`ResponseStage.response_hook`).
ResponseHook: TypeAlias = Callable[[Exchange], ResponseOutcome | Awaitable[ResponseOutcome]]


class Stage:
    """Common part of every stage: its name and settings."""

    #: Whether the stage needs the complete request body before its request hook runs.
    needs_request_body: bool = False
    #: Whether the stage needs the complete response body before its response hook runs.
    needs_response_body: bool = False
    #: Whether skipping the stage's response hook would leak what it exists to hide (a
    #: phantom stage's upstream token): ``response_body_over_limit: pass`` is then a load
    #: error on its route, since a body over the limit would go out unseen.
    response_body_required: bool = False
    #: Whether the stage keeps state in ``services.state`` that every worker must share
    #: (counters, blocks): the per-process memory backend is then refused with several workers.
    uses_state: bool = False
    #: Whether the stage's head hook answers CORS preflights (``OPTIONS`` with
    #: ``Access-Control-Request-Method``): the proxy then routes a preflight to the route of
    #: the method it asks for, even where that route does not list OPTIONS.
    answers_preflight: bool = False

    def __init__(self, name: str, config: StageConfig) -> None:
        self.name = name
        self.config = config

    async def start(self, services: Services) -> None:
        """Take what the stage needs from the worker (state, HTTP client, clock); open
        connections, start refresh tasks. Called once per stage object, by the worker only,
        before the stage serves a request. An exception stops the worker from starting (or
        rejects the reload, which keeps the previous configuration)."""
        return None

    async def close(self) -> None:
        """Release what :meth:`start` took. Called once, when the stage serves no more
        requests; the worker's services themselves stay open (they are shared)."""
        return None


class HeadStage(Stage, ABC):
    """A stage that decides on the request head alone, in registry order, before anything of
    the body is read and before ``100 Continue`` is sent: a client it refuses uploads
    nothing. Authentication, rate limits and parameter checks belong here. All head hooks
    run before any request hook (:class:`RequestStage`)."""

    @abstractmethod
    def on_request_head(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        """Like :meth:`RequestStage.on_request`, with ``exchange.request.body`` not read
        (``None``): ``None`` to continue, a :class:`Block` to refuse, a :class:`Response`
        to answer -- or an awaitable giving one of those."""

    def head_hook(self) -> RequestHook:
        """What the chain calls in place of :meth:`on_request_head`, taken once when the
        chain is built: the method itself, or a compiled object's method that decides the
        same (it must: :meth:`on_request_head` stays what tests and callers use)."""
        return self.on_request_head


class RequestStage(Stage, ABC):
    """A stage that sees requests, in registry order, before they go upstream."""

    @abstractmethod
    def on_request(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        """Return ``None`` to continue, a :class:`Block` to refuse, or a :class:`Response`
        to answer the request without the upstream -- or an awaitable giving one of those."""

    def request_hook(self) -> RequestHook:
        """What the chain calls in place of :meth:`on_request` (see :meth:`HeadStage.head_hook`)."""
        return self.on_request


class ResponseStage(Stage, ABC):
    """A stage that sees responses, in reverse registry order, before they go to the client."""

    #: Whether the response hook does nothing but add header fields, which
    #: :meth:`response_fields` also gives as bytes: where no other stage looks at responses,
    #: the proxy then sends the upstream's head as the bytes it came in with those lines
    #: after it, instead of decoding it for the hook and writing it again.
    adds_fields_only: bool = False

    @abstractmethod
    def on_response(self, exchange: Exchange) -> ResponseOutcome | Awaitable[ResponseOutcome]:
        """Inspect or change ``exchange.response``; return a :class:`Block` to replace it
        (or an awaitable giving ``None`` or a :class:`Block`)."""

    def response_fields(self, exchange: Exchange) -> bytes:
        """With :attr:`adds_fields_only`: the header lines (``name: value\\r\\n`` each,
        names lower-case, latin-1) that :meth:`on_response` would add, in its order."""
        return b""

    def response_hook(self) -> ResponseHook:
        """What the chain calls in place of :meth:`on_response` (see :meth:`HeadStage.head_hook`)."""
        return self.on_response


class ResponseBodyStage(Stage, ABC):
    """A stage that sees the upstream's response body as it streams, in bounded pieces, in
    reverse registry order, and may change it (redaction of large or streamed responses).
    Memory stays flat whatever the body's size: nothing is buffered but :attr:`overlap`.

    A body known in full (small, or buffered for a :class:`ResponseStage` that needs it) is
    one piece with ``final`` true. A changed body goes to the client re-framed: chunked (or
    close-delimited to an HTTP/1.0 client) when it streams, with its new length when known
    in full; on a route with such a stage, a streamed response never keeps the upstream's
    ``Content-Length``. Hooks answer at once (no awaitable): a body cannot wait on I/O.
    """

    #: Trailing bytes of what the hook returned that are held back and given to it again at
    #: the start of the next piece, so that anything up to ``overlap + 1`` bytes long that
    #: straddles two pieces is seen whole once (a pattern split across chunks is still
    #: found). The hook therefore sees part of its own output again, and must leave it as it
    #: is (a redaction mark must not match what it replaces).
    overlap: int = 0

    @abstractmethod
    def on_response_chunk(self, exchange: Exchange, chunk: bytes, final: bool) -> bytes:
        """Return what to send in place of ``chunk`` (itself, when nothing changes);
        ``final`` is true on the last piece of the body (which may be empty). Raising is a
        stage failure under ``failure_mode``: closed, a body known in full is answered with
        500, a streaming one is cut (its head is out); open, the stage sees no more of it."""


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """What a stage may know about the route it is built for (at load, once)."""

    route_id: str
    service: str
    path: str
    methods: frozenset[str]
    public: bool
    #: The OpenAPI operation object, when the route comes from an OpenAPI document.
    operation: dict[str, Any] | None = None
    #: The whole OpenAPI document (for ``$ref`` resolution), when there is one.
    openapi: dict[str, Any] | None = None
    #: The built-in OAuth server is on (``oauth_server.enabled``): the route's bearer tokens
    #: may also be the server's own.
    own_tokens: bool = False
    #: The URL of the service's first upstream target (``None`` in embedded mode), for a
    #: stage that asks the upstream something once at start (a GraphQL schema).
    upstream: str | None = None


@dataclass(frozen=True, slots=True)
class StageSpec:
    """A stage type as the registry knows it: its name, config schema and factory."""

    name: str
    config_model: type[StageConfig]
    #: Called once per route: ``build(config, route)``; ``None`` when the stage has nothing
    #: to do on that route (it is then left out of the chain and costs nothing).
    build: Callable[[Any, RouteInfo], Stage | None]
    #: Run on every route unless disabled (secure defaults), or only where configured.
    default_on: bool = False
    description: str = ""
    #: Called once per route with the merged settings (before ``enabled`` is applied) and
    #: whether the route is public: ``(field, message)`` when those settings are not allowed
    #: there (auth cannot be turned off where authentication is required).
    route_check: Callable[[Any, bool], tuple[str, str] | None] | None = None
    #: The OpenAPI extension's name when it is not derived from ``name`` (which stays the
    #: ``policies`` key): ``x-bastion-rate-limit`` for ``ratelimit``.
    extension_name: str = ""
    #: The field a bare list written in place of the settings fills (``limits`` for
    #: ``ratelimit``: ``x-bastion-rate-limit: [{...}, {...}]``); '' when a list is an error.
    list_field: str = ""
    #: Fields of this stage's settings that hold another stage's settings, as a shorthand
    #: (field, that stage's name): the ``response`` stage's ``redact: [card, ssn]`` is the
    #: ``redact`` stage's settings, written where a reader looks for response protection.
    lends: tuple[tuple[str, str], ...] = ()

    @property
    def extension(self) -> str:
        """The OpenAPI extension that carries this stage's policy."""
        return self.extension_name or "x-bastion-" + self.name.replace("_", "-")
