"""One GraphQL document parsed and measured, once: what the ``graphql`` stage's limits look at.

What a document costs the upstream does not depend on who sends it, so a document is
measured once per route (and cached by the stage): its depth with fragments followed, its
aliases counted each time a fragment is spread, the most times one field is selected in
one selection set, its directives and its cost. What depends on the sender (their roles,
for introspection and admin fields) is recorded as facts the stage checks per request.

Without the upstream's schema, a field's type is known only where the document says it:
the root of an operation (``Query``, ``Mutation``, ``Subscription``) and a fragment's type
condition (``... on User``). ``Type.field`` names in the settings match fields there; a
plain ``field`` matches a field of that name anywhere. With the schema, every field's type
is known: ``User.salary`` matches wherever a ``User``'s ``salary`` is selected (through an
interface or union ``User`` belongs to too), and a list field without a size argument costs
``default_list_size`` times what it selects.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from graphql import (
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    GraphQLUnionType,
    parse,
    validate,
)
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
)

from bastion.stages.graphql.config import GraphQLConfig
from bastion.stages.graphql.schema import CONVENTIONAL_ROOTS, root_aliases
from bastion.types import Block

_INTROSPECTION = frozenset({"__schema", "__type"})
#: graphql-core's messages when a document has more tokens than ``max_tokens``, and when it
#: is nested deeper than the parser's recursion allows (over any depth limit we accept).
_TOO_MANY_TOKENS = "Document contains more than"
_TOO_DEEP = "nested too deeply"
#: "Did you mean ...?" as graphql-core and graphql-js write it after an unknown field,
#: argument or type: the names it offers are the schema's.
SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def limit_block(what: str, found: int, allowed: int, setting: str) -> Block:
    """The 400 answer to a document over one of the limits, naming it (never the input)."""
    return Block(
        400,
        "Bad Request",
        f"The GraphQL document's {what} is {found}; at most {allowed} is allowed ({setting}).",
        reason="graphql." + setting.removeprefix("max_"),
    )


def _too_deep(config: GraphQLConfig) -> Block:
    """A document nested beyond what the parser follows: over any depth limit."""
    return Block(
        400,
        "Bad Request",
        f"The GraphQL document is nested deeper than {config.max_depth} (max_depth).",
        reason="graphql.depth",
    )


def malformed(detail: str) -> Block:
    """The 400 answer to a request that is not a GraphQL request Bastion can read."""
    return Block(400, "Bad Request", detail, reason="graphql.malformed")


@dataclass(frozen=True, slots=True)
class Measured:
    """A document as the stage's limits see it."""

    #: The limit the document breaks whoever sends it, or ``None``.
    block: Block | None
    #: SHA-256 of the document's text, in hex (for the persisted-query allow-list).
    digest: str
    introspection: bool = False
    mutation: bool = False
    #: It selects a field of ``admin_fields``.
    admin_field: bool = False
    #: The ``field_access`` entries it selects (names as the settings write them).
    guarded: tuple[str, ...] = ()
    #: Its operations' kinds (``query``, ``mutation``, ``subscription``), each once.
    kinds: tuple[str, ...] = ()
    #: The variables that give list sizes: when there are any, the cost depends on the
    #: request and :func:`variable_cost` works it out (once per distinct set of sizes).
    size_variables: tuple[str, ...] = ()
    #: The cost of its costliest operation (with no list size given by a variable: 1 each).
    cost: int = 0
    #: Its operations, as the access record names them: ``query ProfilePage``, ``mutation``.
    operations: tuple[str, ...] = ()
    document: DocumentNode | None = None
    #: Cost by the values of ``size_variables`` (bounded by :data:`COSTS_KEPT`): clients
    #: page with a few sizes, so a repeated query is not walked again.
    costs: dict[tuple[int | None, ...], int] = field(default_factory=dict, compare=False)
    #: ``block`` with the field suggestions the schema's validation offered, for a caller
    #: allowed to see them (``None`` when ``block`` has none to remove).
    suggesting: Block | None = None


#: Distinct sets of list sizes whose cost is kept per document (then the set is emptied).
COSTS_KEPT = 32


def _size(value: object) -> int | None:
    """A variable's value as a list size: an integer (not a boolean), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Walk:
    """One pass over a document's operations, fragments followed (each measured once)."""

    def __init__(
        self,
        config: GraphQLConfig,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, object] | None,
        schema: GraphQLSchema | None = None,
    ) -> None:
        self.config = config
        self.schema = schema
        # A schema whose root types have other names (``schema { mutation: Writes }``):
        # settings written with the conventional ``Mutation.field`` still apply there.
        self.root_aliases = root_aliases(schema)
        self.fragments = fragments
        self.variables = variables
        self.admin = frozenset(config.admin_fields)
        self.access = frozenset(config.field_access)
        self.list_arguments = frozenset(config.list_arguments)
        # name -> (depth, aliases, cost) of a fragment's selection set, once walked.
        self.memo: dict[str, tuple[int, int, int]] = {}
        self.duplicates = 0
        self.directives = 0
        self.introspection = False
        self.admin_field = False
        self.guarded: dict[str, None] = {}  # ordered set
        self.size_variables: dict[str, None] = {}  # ordered set

    def selection_set(
        self, node: SelectionSetNode, parent: str, seen: dict[str, int] | None = None
    ) -> tuple[int, int, int]:
        """(depth, aliases, cost) of ``node``, whose fields belong to the type ``parent``
        ("" when unknown). ``seen`` counts the fields selected in the enclosing selection set,
        which an inline fragment's fields are part of (the server merges them)."""
        depth = aliases = cost = 0
        if seen is None:
            seen = {}
        for selection in node.selections:
            self.directives += len(selection.directives or ())
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                seen[key] = count = seen.get(key, 0) + 1
                self.duplicates = max(self.duplicates, count)
                d, a, c = self.field(selection, parent)
                depth, aliases, cost = max(depth, d), aliases + a, cost + c
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition.name.value if selection.type_condition else parent
                d, a, c = self.selection_set(selection.selection_set, condition, seen)
                depth, aliases, cost = max(depth, d), aliases + a, cost + c
            elif isinstance(selection, FragmentSpreadNode):
                d, a, c = self.fragment(selection.name.value)
                depth, aliases, cost = max(depth, d), aliases + a, cost + c
        return depth, aliases, cost

    def field(self, node: FieldNode, parent: str) -> tuple[int, int, int]:
        name = node.name.value
        qualified = [f"{owner}.{name}" for owner in self.owners(parent)]
        if name in _INTROSPECTION:
            self.introspection = True
        if name in self.admin or any(q in self.admin for q in qualified):
            self.admin_field = True
        if self.access:
            for key in (name, *qualified):
                if key in self.access:
                    self.guarded[key] = None
        costs = self.config.field_costs
        own = next((costs[q] for q in qualified if q in costs), costs.get(name, self.config.default_field_cost))
        aliases = 1 if node.alias is not None else 0
        if node.selection_set is None:
            return 1, aliases, own
        child, listed = self.field_type(parent, name)
        d, a, c = self.selection_set(node.selection_set, child)
        multiplier = self.list_size(node) or (self.config.default_list_size if listed else 1)
        return d + 1, aliases + a, own + multiplier * c

    def owners(self, parent: str) -> tuple[str, ...]:
        """The types a field selected on ``parent`` belongs to: ``parent`` itself and, for an
        interface or a union (known from the schema), every object type it may be."""
        if not parent:
            return ()
        if self.schema is None:
            return (parent,)
        alias = self.root_aliases.get(parent)
        if alias is not None:
            return (parent, alias)
        named = self.schema.get_type(parent)
        if isinstance(named, (GraphQLInterfaceType, GraphQLUnionType)):
            return (parent, *(t.name for t in self.schema.get_possible_types(named)))
        return (parent,)

    def field_type(self, parent: str, name: str) -> tuple[str, bool]:
        """The name of the type field ``name`` of ``parent`` selects ("" without a schema
        that knows it), and whether it is a list."""
        owner = self.schema.get_type(parent) if self.schema is not None and parent else None
        if not isinstance(owner, (GraphQLObjectType, GraphQLInterfaceType)) or name not in owner.fields:
            return "", False
        kind = owner.fields[name].type
        listed = False
        while isinstance(kind, (GraphQLNonNull, GraphQLList)):
            listed = listed or isinstance(kind, GraphQLList)
            kind = kind.of_type
        return kind.name, listed

    def fragment(self, name: str) -> tuple[int, int, int]:
        known = self.memo.get(name)
        if known is not None:
            return known
        definition = self.fragments[name]  # spreads of unknown fragments are refused before
        measured = self.selection_set(definition.selection_set, definition.type_condition.name.value)
        self.directives += len(definition.directives or ())
        self.memo[name] = measured
        return measured

    def list_size(self, node: FieldNode) -> int:
        """How many items the field asks for: its largest list argument, or 0 when it has none."""
        size = 0
        for argument in node.arguments or ():
            if argument.name.value not in self.list_arguments:
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                size = max(size, int(value.value))
            elif isinstance(value, VariableNode):
                self.size_variables[value.name.value] = None
                given = _size((self.variables or {}).get(value.name.value))
                size = max(size, given if given is not None else self.config.default_list_size)
            else:
                size = max(size, self.config.default_list_size)
        return size


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode] | Block:
    """The document's fragments by name, or why the document cannot run."""
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            if definition.name.value in fragments:
                return malformed("The GraphQL document defines a fragment twice.")
            fragments[definition.name.value] = definition
        elif not isinstance(definition, OperationDefinitionNode):
            return malformed("The GraphQL document is not an executable document (operations and fragments only).")
    return fragments


def _spreads(node: SelectionSetNode, into: set[str]) -> set[str]:
    """The names of the fragments spread in ``node``, at any depth (without following them)."""
    for selection in node.selections:
        if isinstance(selection, FragmentSpreadNode):
            into.add(selection.name.value)
        elif isinstance(selection, (FieldNode, InlineFragmentNode)) and selection.selection_set is not None:
            _spreads(selection.selection_set, into)
    return into


def _fragment_problem(document: DocumentNode, fragments: dict[str, FragmentDefinitionNode]) -> Block | None:
    """A spread of an unknown fragment, or a cycle of fragments (``A`` spreads ``B``
    spreads ``A``: infinite depth, refused whatever the limits)."""
    graph = {name: _spreads(f.selection_set, set()) for name, f in fragments.items()}
    for definition in document.definitions:
        if (
            isinstance(definition, OperationDefinitionNode)
            and not _spreads(definition.selection_set, set()) <= graph.keys()
        ):
            return malformed("The GraphQL document spreads a fragment it does not define.")
    for targets in graph.values():
        if not targets <= graph.keys():
            return malformed("The GraphQL document spreads a fragment it does not define.")
    done: set[str] = set()
    for start in graph:
        # Iterative depth-first search; a name met again on the current path is a cycle.
        path: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path.add(start)
        while stack:
            name, todo = stack[-1]
            if not todo:
                stack.pop()
                path.discard(name)
                done.add(name)
                continue
            target = todo.pop()
            if target in path:
                return Block(
                    400,
                    "Bad Request",
                    "The GraphQL document's fragments spread each other in a cycle.",
                    reason="graphql.circular_fragments",
                )
            if target not in done:
                path.add(target)
                stack.append((target, sorted(graph[target])))
    return None


def _invalid(message: str) -> Block:
    """The 400 answer to a document the upstream's schema refuses, with graphql-core's reason."""
    return Block(
        400,
        "Bad Request",
        f"The GraphQL document does not match the API's schema: {message}",
        reason="graphql.invalid",
    )


def _validated(document: DocumentNode, schema: GraphQLSchema, digest: str) -> Measured | None:
    """The refusal of a document ``schema`` does not accept (its first error, with and
    without suggestions), or ``None``."""
    errors = validate(schema, document, max_errors=1)
    if not errors:
        return None
    message = errors[0].message
    plain = SUGGESTION.sub("", message)
    return Measured(_invalid(plain), digest, suggesting=_invalid(message) if plain != message else None)


def measure(text: str, config: GraphQLConfig, schema: GraphQLSchema | None = None) -> Measured:
    """Parse ``text`` and hold it to the limits of ``config`` that do not depend on the
    sender, then (when there is one) to the upstream's ``schema``."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    try:
        document = parse(text, no_location=True, max_tokens=config.max_tokens)
    except GraphQLSyntaxError as error:
        if _TOO_MANY_TOKENS in error.message:
            block = Block(
                400,
                "Bad Request",
                f"The GraphQL document has more than {config.max_tokens} tokens (max_tokens).",
                reason="graphql.tokens",
            )
            return Measured(block, digest)
        if _TOO_DEEP in error.message:
            return Measured(_too_deep(config), digest)
        return Measured(malformed("The GraphQL document does not parse."), digest)
    except RecursionError:
        return Measured(_too_deep(config), digest)
    fragments = _fragments(document)
    if isinstance(fragments, Block):
        return Measured(fragments, digest)
    if not any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
        return Measured(malformed("The GraphQL document has no operation."), digest)
    problem = _fragment_problem(document, fragments)
    if problem is not None:
        return Measured(problem, digest)
    walk = _Walk(config, fragments, None, schema)
    depth, aliases, cost, mutation = _operations(walk, document)
    names = _names(document)
    checks = (
        ("depth", depth, config.max_depth, "max_depth"),
        ("number of aliases", aliases, config.max_aliases, "max_aliases"),
        (
            "most selections of one field in one place",
            walk.duplicates,
            config.max_duplicate_fields,
            "max_duplicate_fields",
        ),
        ("number of directives", walk.directives, config.max_directives, "max_directives"),
    )
    for what, found, allowed, setting in checks:
        if found > allowed:
            return Measured(limit_block(what, found, allowed, setting), digest)
    if not walk.size_variables and cost > config.max_cost:
        return Measured(limit_block("cost", cost, config.max_cost, "max_cost"), digest)
    # Validation runs last: the limits above bound its work (some of graphql-core's rules
    # compare every pair of fields of a selection set).
    if schema is not None:
        refused = _validated(document, schema, digest)
        if refused is not None:
            return refused
    return Measured(
        None,
        digest,
        introspection=walk.introspection,
        mutation=mutation,
        admin_field=walk.admin_field,
        guarded=tuple(walk.guarded),
        kinds=tuple(dict.fromkeys(n.split(" ", 1)[0] for n in names)),
        size_variables=tuple(walk.size_variables),
        document=document,
        cost=cost,
        operations=tuple(names),
    )


def _names(document: DocumentNode) -> list[str]:
    """``query Name`` (or just ``query``) for each operation of ``document``."""
    out: list[str] = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            kind = definition.operation.value
            out.append(f"{kind} {definition.name.value}" if definition.name else kind)
    return out


def _operations(walk: _Walk, document: DocumentNode) -> tuple[int, int, int, bool]:
    """(deepest, aliases, costliest, any mutation) over the document's operations."""
    depth = aliases = cost = 0
    mutation = False
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            walk.directives += len(definition.directives or ())
            mutation = mutation or definition.operation == OperationType.MUTATION
            d, a, c = walk.selection_set(definition.selection_set, _root(walk.schema, definition.operation))
            depth, aliases, cost = max(depth, d), aliases + a, max(cost, c)
    return depth, aliases, cost, mutation


def _root(schema: GraphQLSchema | None, operation: OperationType) -> str:
    """The name of an operation's root type: the schema's (``schema { query: Root }``), else
    the conventional one."""
    root = schema.get_root_type(operation) if schema is not None else None
    return root.name if root is not None else CONVENTIONAL_ROOTS[operation]


def variable_cost(
    measured: Measured,
    config: GraphQLConfig,
    variables: dict[str, object] | None,
    schema: GraphQLSchema | None = None,
) -> int:
    """The cost of a document whose list sizes come from the request's variables."""
    given = variables or {}
    key = tuple(_size(given.get(name)) for name in measured.size_variables)
    cost = measured.costs.get(key)
    if cost is None:
        document = measured.document
        if document is None:
            return measured.cost
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        _, _, cost, _ = _operations(_Walk(config, fragments, variables, schema), document)
        if len(measured.costs) >= COSTS_KEPT:
            measured.costs.clear()
        measured.costs[key] = cost
    return cost
