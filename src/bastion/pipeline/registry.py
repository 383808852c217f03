"""The one ordered list of stages.

Request hooks run top to bottom, response hooks bottom to top. Order is security: a
request is authenticated before it is rate-limited per consumer, validated before it is
inspected for attacks, and the response is filtered before the audit stage records it.
New stages are inserted here, at the place their dependencies dictate:

    auth -> ratelimit -> validation -> detection -> response -> headers -> audit
"""

from __future__ import annotations

from bastion.pipeline.stage import StageSpec
from bastion.stages import auth, detection, headers, validation

ORDER: tuple[StageSpec, ...] = (auth.SPEC, validation.SPEC, detection.SPEC, headers.SPEC)

BY_NAME: dict[str, StageSpec] = {spec.name: spec for spec in ORDER}
BY_EXTENSION: dict[str, StageSpec] = {spec.extension: spec for spec in ORDER}
