"""The one ordered list of stages, and the order in which their hooks really run.

    ORDER: tracing -> cors -> blocklist -> auth -> access -> concurrency -> ratelimit -> validation -> graphql
           -> detection -> headers -> redact -> response -> login -> phantom -> discovery

On the way in, top to bottom: every head hook (``on_request_head``) first, before any of
the body is read, then every request hook (``on_request``). On the way out, bottom to top:
every response hook (``on_response``: on the head, or on the whole body for a stage that
needs it), then every body hook (``on_response_chunk``) on each piece of the body as it
goes to the client; the exchange's record goes to the record sinks (metrics, the access
log) last, once the answer is out. With today's stages:

    request side:   tracing (the trace context, at the head) -> cors (a preflight answered,
                    at the head) -> blocklist (a blocked client IP, at the head; a blocked
                    consumer or credential, once signed in) -> auth (from
                    the route, at the head) -> access (head, then body) -> concurrency (head)
                    -> ratelimit (head; limits keyed on a body member, body) -> validation ->
                    graphql (a GraphQL route's documents parsed and limited) -> detection ->
                    login (a login's account counted) -> discovery (the query's parameters noted)
    response side:  phantom (a login's token replaced) -> login (the try settled by the
                    upstream's own answer) -> response (filtered, errors masked) -> redact
                    (sensitive data in headers, and the whole body where a type blocks) ->
                    headers -> graphql (field suggestions removed from errors) -> ratelimit
                    (its RateLimit fields) -> access (where it learns who created an object)
                    -> cors (its Access-Control-* headers) -> discovery's body hook (a
                    sampled body's sensitive data types noted, as the upstream sent it) ->
                    redact's body hook (each piece of the body as it streams) -> the record

Order is security. A request is authenticated, then authorized (``access`` reads the
principal ``auth`` proved), before it is validated, and validated before it is inspected
for attacks: nothing works on a request its caller may not make. On the way out a
response is filtered before its headers are set, and recorded last, as it was sent: a stage that filters or redacts
response bodies goes *below* ``headers`` in ``ORDER``, so that on the response side it
runs first (filter, then headers, then the record). A new stage goes where its
dependencies put it (a rate limit per consumer after ``auth``; after ``access`` too, so a
request that may not be made at all spends no budget; ``cors`` before ``auth``, since a
preflight carries no credentials; ``blocklist`` right after it, so a blocked client costs
no key lookup or token check; ``tracing`` first of all, so that a request any stage refuses
is still a span of its client's trace; ``graphql`` after ``validation``, which proved the body is
the JSON the route declares, and before ``detection``, which need not inspect a document
that is refused anyway; ``login`` last of the deciding stages on the way in, so that only a try the upstream will
answer is counted against its account, and below ``response``, so that it settles the try
on the upstream's own answer, not on a uniform failure that replaced it; ``discovery`` last
of all, so that it notes only requests that go upstream, and sees the upstream's own body
before any stage changes it); there are no priorities.
``tests/pipeline/test_order.py`` holds this text to ``ORDER`` and to what the chain runs.
"""

from __future__ import annotations

from bastion.pipeline.stage import StageSpec
from bastion.stages import (
    access,
    auth,
    blocklist,
    concurrency,
    cors,
    detection,
    discovery,
    graphql,
    headers,
    login,
    phantom,
    ratelimit,
    redact,
    response,
    tracing,
    validation,
)

ORDER: tuple[StageSpec, ...] = (
    tracing.SPEC,
    cors.SPEC,
    blocklist.SPEC,
    auth.SPEC,
    access.SPEC,
    concurrency.SPEC,
    ratelimit.SPEC,
    validation.SPEC,
    graphql.SPEC,
    detection.SPEC,
    headers.SPEC,
    redact.SPEC,
    response.SPEC,
    login.SPEC,
    phantom.SPEC,
    discovery.SPEC,
)

BY_NAME: dict[str, StageSpec] = {spec.name: spec for spec in ORDER}
BY_EXTENSION: dict[str, StageSpec] = {spec.extension: spec for spec in ORDER}
