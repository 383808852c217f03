"""The block list: clients, consumers and credentials a detector blocked for a while."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.blocklist.config import BlocklistConfig
from bastion.stages.blocklist.stage import BlocklistStage, block_key

SPEC = StageSpec(
    name="blocklist",
    config_model=BlocklistConfig,
    build=BlocklistStage.from_config,
    description=(
        "Refuses (403 `blocked.<detector>`) a client IP at the request head, and a consumer or credential "
        "once signed in, while a detector with `action: block` has them on the block list. On every route "
        "as soon as a detector blocks."
    ),
)

__all__ = ["SPEC", "BlocklistConfig", "BlocklistStage", "block_key"]
