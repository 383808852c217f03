"""GraphQL protection: a route declared GraphQL has every document parsed and limited.

A GraphQL endpoint is one route that hides every operation. This stage reads each
request's documents (JSON single or batched, ``application/graphql``, ``GET ?query=``),
refuses what does not parse and what is too deep, too wide, too costly, batched too much
or introspects, enforces admin-only operations and the persisted-query allow-list, and
removes field suggestions from the upstream's error messages.
"""

from bastion.pipeline.stage import StageSpec
from bastion.stages.graphql.config import GraphQLConfig
from bastion.stages.graphql.stage import GraphQLStage

SPEC = StageSpec(
    name="graphql",
    config_model=GraphQLConfig,
    build=GraphQLStage.from_config,
    description=(
        "Declares a route GraphQL: every request's documents are parsed (400 `graphql.malformed` when they do "
        "not) and held to limits of depth, aliases, batching, duplicated fields, directives, tokens and cost "
        "(400 naming the limit); introspection and admin operations need a role (403), a persisted-query "
        "allow-list may restrict documents to known hashes, and field suggestions are removed from the "
        "upstream's errors."
    ),
)

__all__ = ["SPEC", "GraphQLConfig", "GraphQLStage"]
