"""Authorization: what an authenticated consumer may do, least privilege, deny by default.

Runs right after ``auth`` and reads the principal it set: roles and scopes per route,
administrative operations (function level), object ownership declared on a parameter or
learned from the operation that created the object (object level), privileged body
properties (property level), and client networks per route and per consumer.
"""

from bastion.pipeline.stage import StageSpec
from bastion.stages.access.config import AccessConfig
from bastion.stages.access.ledger import LEDGER_KEY, MemoryOwnership, OwnershipLedger, OwnershipRepository
from bastion.stages.access.stage import AccessStage

SPEC = StageSpec(
    name="access",
    config_model=AccessConfig,
    build=AccessStage.from_config,
    default_on=True,
    description=(
        "Authorizes what `auth` authenticated, least privilege, deny by default: roles and scopes, "
        "administrative operations (a setting or the OpenAPI tag `admin`), object ownership (declared on "
        "a parameter, or learned from the operation that created the object), privileged body properties, "
        "client networks per route and per consumer; refuses method and URL override headers. A refusal "
        "is 403 (`access.<rule>`), or 401 for an anonymous request to a route that needs a consumer."
    ),
)

__all__ = [
    "LEDGER_KEY",
    "SPEC",
    "AccessConfig",
    "AccessStage",
    "MemoryOwnership",
    "OwnershipLedger",
    "OwnershipRepository",
]
