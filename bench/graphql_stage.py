"""Per-request cost of the ``graphql`` stage, in process, against no stage, same run.

    python bench/graphql_stage.py            # a typical 1 KB query
    python bench/graphql_stage.py --quick    # a few iterations: checks that it works

The chain's request phase (``Chain.request``) on a fresh exchange whose body is a JSON
GraphQL request of about 1 KB (a named query with variables, two fragments, nested lists
sized by ``first``), for:

- ``none``: a chain with no stage (the baseline);
- ``cached``: the stage with its defaults, the document seen before (the usual case: the
  JSON read, the document found in the cache, its cost for these list sizes too);
- ``uncached``: the same with ``cache_size: 0`` (parsed and measured on every request: what
  a client sending a new document each time costs).

Each figure is the minimum over REPEATS runs of NUMBER calls (the median beside it), in
microseconds per request, with the difference to ``none``; the target (issue 21) is at
most 100 µs for ``cached``. Nothing touches a socket.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable

import orjson

from bastion.pipeline.chain import Chain
from bastion.stages.graphql import GraphQLConfig, GraphQLStage
from bastion.types import Exchange, Request

REPEATS = 7
NUMBER = 2000

#: A query as a client application writes it: about 1 KB once in its JSON request.
QUERY = """\
query ProfilePage($login: String!, $posts: Int!, $comments: Int = 5, $withStats: Boolean = false) {
  viewer { id login avatarUrl(size: 64) isSiteAdmin }
  user(login: $login) {
    ...UserHeader
    followers(first: 3) { totalCount nodes { ...UserBadge } }
    posts(first: $posts, orderBy: {field: CREATED_AT, direction: DESC}) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        id title createdAt
        tags(first: 5) { name }
        stats @include(if: $withStats) { views likes }
        comments(first: $comments) {
          totalCount
          nodes { id body createdAt author { ...UserBadge } }
        }
      }
    }
  }
}

fragment UserHeader on User {
  id login name bio company location websiteUrl createdAt
  status { emoji message }
}

fragment UserBadge on User { id login avatarUrl(size: 32) }
"""
VARIABLES = {"login": "octocat", "posts": 10, "comments": 5, "withStats": True}
BODY = orjson.dumps({"query": QUERY, "operationName": "ProfilePage", "variables": VARIABLES})


def one_call(chain: Chain) -> Callable[[], object]:
    headers = [("host", "api.bench"), ("content-type", "application/json")]

    def run() -> object:
        request = Request("POST", "/graphql", "/graphql", "", headers)
        request.body = BODY
        return chain.request(Exchange(request, "bench-1"))

    return run


def scenarios() -> dict[str, Chain]:
    return {
        "none": Chain([]),
        "cached": Chain([GraphQLStage(GraphQLConfig())]),
        "uncached": Chain([GraphQLStage(GraphQLConfig(cache_size=0))]),
    }


def measure(run: Callable[[], object], number: int, repeats: int) -> tuple[float, float]:
    """(minimum, median) microseconds per call."""
    times = [t / number * 1e6 for t in timeit.repeat(run, number=number, repeat=repeats)]
    return min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few iterations: check that it works")
    args = parser.parse_args(argv)
    repeats, number = (1, 3) if args.quick else (REPEATS, NUMBER)
    print(f"query of {len(BODY)} bytes")
    print(f"{'scenario':>9} {'min us':>10} {'median us':>10} {'vs none':>9}")
    base = 0.0
    for name, chain in scenarios().items():
        low, mid = measure(one_call(chain), number, repeats)
        base = base or low
        print(f"{name:>9} {low:10.1f} {mid:10.1f} {low - base:+8.1f}us")


if __name__ == "__main__":
    main()
