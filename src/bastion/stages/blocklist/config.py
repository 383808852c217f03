"""Settings of the ``blocklist`` stage."""

from __future__ import annotations

from bastion.pipeline.stage import StageConfig


class BlocklistConfig(StageConfig):
    """``policies.blocklist``: the block list kept by the detectors (``detectors:``, a
    detector's ``action: block``). Put on every route by the loader once a detector blocks;
    ``enabled: false`` on a route leaves it out there. With ``failure_mode: closed`` (the
    default) a request the block list cannot be read for is refused (503)."""
