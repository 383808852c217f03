"""Settings of the ``detection`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.pipeline.stage import StageConfig
from bastion.stages.detection.rules import ALL_RULES, Category

Mode = Literal["block", "monitor", "off"]


class Exclusion(BaseModel):
    """Stop one rule or one category from counting at some inputs (false-positive tuning).

    ``location`` is an input location as written in the access log (``json:$.comment``,
    ``query:q``, ``header:user-agent``); a trailing ``*`` makes it a prefix
    (``json:$.post.*``). Without ``location`` the exclusion applies everywhere.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_id: int | None = Field(None, description="The rule to exclude (see the rule list).")
    category: Category | None = Field(None, description="Exclude every rule of this category.")
    location: str | None = Field(
        None,
        description="Input location the exclusion applies to; a trailing '*' matches a prefix.",
        min_length=1,
        max_length=512,
    )

    @model_validator(mode="after")
    def _check(self) -> Exclusion:
        if self.rule_id is None and self.category is None:
            raise ValueError("an exclusion needs a rule_id or a category")
        if self.rule_id is not None and self.rule_id not in ALL_RULES:
            raise ValueError(f"there is no detection rule {self.rule_id}")
        return self

    def covers(self, rule_id: int, category: str, location: str) -> bool:
        """Whether a hit of ``rule_id`` (of ``category``) at ``location`` is excluded."""
        if self.rule_id is not None and self.rule_id != rule_id:
            return False
        if self.category is not None and self.category != category:
            return False
        if self.location is None:
            return True
        if self.location.endswith("*"):
            return location.startswith(self.location[:-1])
        return location == self.location


class DetectionConfig(StageConfig):
    """``policies.detection``: the negative model, i.e. injection and attack detection."""

    mode: Mode = Field(
        "block",
        description=(
            "'block' refuses requests whose anomaly score reaches the threshold, 'monitor' "
            "only logs what would have been blocked, 'off' skips inspection."
        ),
    )
    paranoia: int = Field(
        1,
        ge=1,
        le=4,
        description=(
            "1 runs only signatures that almost never match legitimate input; each higher "
            "level adds broader rules that catch more evasions and more false positives."
        ),
    )
    threshold: int = Field(
        5,
        ge=1,
        le=1000,
        description="Anomaly score at which a request is blocked (a critical rule scores 5).",
    )
    categories: dict[Category, Mode] = Field(
        default_factory=dict,
        description="Per-category mode overriding 'mode' (e.g. {'recon': 'monitor'}).",
    )
    exclusions: list[Exclusion] = Field(
        default_factory=list,
        description="Rules or categories that do not count at given input locations.",
    )
    max_inputs: int = Field(
        1024, ge=1, le=100_000, description="Most inputs (fields, headers...) inspected per request."
    )
    max_json_depth: int = Field(32, ge=1, le=1024, description="JSON nesting deeper than this is not walked further.")
    max_inspected_chars: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Most characters inspected per request, all inputs together (a compressed body counts inflated).",
    )
    uninspectable: Literal["block", "monitor"] = Field(
        "block",
        description=(
            "A request with more to inspect than max_inputs, max_inspected_chars or max_json_depth allow "
            "cannot be fully inspected, and an attack could hide past the limit: 'block' refuses it "
            "(413, reason detection.uninspectable), 'monitor' inspects what fits, forwards it and logs "
            "the decision. Applies whenever some category blocks."
        ),
    )

    def category_mode(self, category: Category) -> Mode:
        """The effective mode of ``category``."""
        if self.mode == "off":
            return "off"
        return self.categories.get(category, self.mode)
