"""Settings of the ``detection`` stage."""

from __future__ import annotations

import glob
import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.pipeline.stage import StageConfig
from bastion.stages.detection.rules import ALL_RULES, CATEGORIES, Category
from bastion.stages.detection.secrules import rules_error

#: What one category of rules does: refuse, only log what it would refuse, or not run.
Mode = Literal["block", "monitor", "off"]
Engine = Literal["native", "modsecurity"]

#: Where Debian's ``modsecurity-crs`` package installs the OWASP Core Rule Set.
DEBIAN_CRS_SETUP = "/etc/modsecurity/crs/crs-setup.conf"
DEBIAN_CRS_RULES = "/usr/share/modsecurity-crs/rules/*.conf"
#: The pip extra that installs the ModSecurity bindings.
MODSECURITY_EXTRA = "pip install 'bastion-gateway[modsecurity]'"


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


def modsecurity_installed() -> bool:
    """Whether the ``libmodsecurity`` bindings can be imported."""
    return importlib.util.find_spec("libmodsecurity") is not None


class ModSecuritySettings(BaseModel):
    """``engine: modsecurity``: the SecRules files to load, by default Debian's OWASP CRS.

    Paranoia and threshold come from the detection settings. The files are parsed when the
    configuration is loaded, so a missing file or a syntax error is a configuration error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[str] = Field(
        default_factory=lambda: [DEBIAN_CRS_SETUP, DEBIAN_CRS_RULES],
        min_length=1,
        max_length=256,
        description=(
            "Absolute paths or glob patterns of SecRules files, loaded in this order (the files of a "
            "pattern by name); every entry must match at least one file. The default is Debian's CRS "
            "setup and rules."
        ),
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["REQUEST-910-IP-REPUTATION.conf"],
        max_length=256,
        description=(
            "File names (glob patterns allowed) left out of what 'rules' matched. The default leaves out "
            "the CRS IP reputation rules: they need GeoIP support, which the libmodsecurity wheel is built "
            "without, and do nothing unless countries or an HTTP:BL key are configured."
        ),
    )
    directives: str = Field(
        "",
        max_length=1024 * 1024,
        description=(
            "More SecLanguage loaded after the files, to tune false positives "
            "(e.g. 'SecRuleRemoveById 920350'). Rule IDs 1000001-1000009 are Bastion's own."
        ),
    )

    @field_validator("rules")
    @classmethod
    def _check_rules(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if not Path(entry).is_absolute():
                raise ValueError(f"{entry!r} is not an absolute path")
            if not glob.glob(entry):
                raise ValueError(f"{entry!r} matches no file")
        return entries

    def files(self) -> list[Path]:
        """The rule files to load, in order, without the excluded ones and without repeats."""
        out: list[Path] = []
        for entry in self.rules:
            for name in sorted(glob.glob(entry)):
                path = Path(name)
                if path not in out and not any(path.match(pattern) for pattern in self.exclude):
                    out.append(path)
        return out

    @model_validator(mode="after")
    def _check_parses(self) -> ModSecuritySettings:
        files = self.files()
        if not files:
            if not any(glob.glob(entry) for entry in self.rules):
                # Only the defaults get here unchecked (an entry given by hand must match a file).
                raise ValueError(
                    f"no rule file exists at {', '.join(self.rules)}: install Debian's modsecurity-crs "
                    "package, or name your SecRules files in 'rules'"
                )
            raise ValueError("every rule file is excluded: there is nothing to load")
        for path in files:
            if not path.is_file():
                raise ValueError(f"{str(path)!r} is not a file")
        if modsecurity_installed():
            # Parse now, so a syntax error is reported with the configuration's other errors.
            problem = rules_error(files, self.directives)
            if problem is not None:
                raise ValueError(f"ModSecurity cannot load the rules: {problem}")
        return self


class DetectionConfig(StageConfig):
    """``policies.detection``: the negative model, i.e. injection and attack detection."""

    engine: Engine = Field(
        "native",
        description=(
            "'native' is Bastion's own rules; 'modsecurity' runs SecRules (e.g. the OWASP CRS) through "
            f"libmodsecurity instead ({MODSECURITY_EXTRA}), far slower per request. With it, 'paranoia' "
            "and 'threshold' set the CRS's tx.paranoia_level and tx.inbound_anomaly_score_threshold, "
            "what ModSecurity would refuse is answered 403 ('enforce: false' only logs it), a body longer than "
            "max_inspected_chars or one it cannot parse (malformed, more than max_inputs arguments or "
            "deeper than max_json_depth) is uninspectable, and 'categories' and 'exclusions' are refused: "
            "tune with 'modsecurity.directives'."
        ),
    )
    modsecurity: ModSecuritySettings = Field(
        # Built unchecked: the default rule files are Debian's CRS, which a machine that runs the
        # native engine need not have. _modsecurity_defaults has them checked (and parsed) when
        # engine 'modsecurity' is chosen.
        default_factory=lambda: ModSecuritySettings.model_construct(),
        description="The SecRules 'engine: modsecurity' loads.",
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
        description=(
            "What a category's rules do, where it is not 'block' (the default): 'monitor' counts "
            "their hits but only logs what they would have blocked, 'off' does not run them "
            "(e.g. {'recon': 'monitor'}). Shadow mode for the whole stage is 'enforce: false'."
        ),
    )
    exclusions: list[Exclusion] = Field(
        default_factory=list,
        description="Rules or categories that do not count at given input locations.",
    )
    allowed_charsets: list[str] = Field(
        default_factory=lambda: ["utf-8", "utf8", "us-ascii", "iso-8859-1", "iso-8859-15", "windows-1252"],
        min_length=1,
        description=(
            "Charsets a request may declare in Content-Type or ask for in Accept (rule 17003 of the "
            "'protocol' category, case-insensitive): others (utf-7, ibm037, utf-16...) are how encoded "
            "attacks get past filters that read the text as UTF-8."
        ),
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

    #: Settings still accepted, with what replaces them (the loader warns where they are set).
    deprecated_fields: ClassVar[dict[str, str]] = {
        "mode": (
            "'mode' is deprecated: shadow mode is 'enforce: false', as for every stage; 'mode: off' is "
            "'enabled: false'; 'mode: block' is the default; per-category modes stay in 'categories'"
        ),
    }

    @field_validator("allowed_charsets")
    @classmethod
    def _lower_charsets(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name.strip() or name.strip() != name:
                raise ValueError(f"{name!r} is not a charset name")
        return [n.lower() for n in names]

    @model_validator(mode="before")
    @classmethod
    def _legacy_mode(cls, data: Any) -> Any:
        """Read the deprecated stage-wide ``mode`` as the settings that mean the same.

        ``mode`` was the mode of every category not listed in ``categories``, so
        ``monitor`` with a category set to ``block`` is those categories blocking and the
        others monitored -- not shadow mode for the whole stage."""
        if not isinstance(data, dict) or "mode" not in data:
            return data
        data = dict(data)
        mode = data.pop("mode")
        categories = data.get("categories")
        if mode == "monitor":
            if isinstance(categories, dict) and "block" in categories.values():
                data["categories"] = {**dict.fromkeys(CATEGORIES, "monitor"), **categories}
            else:
                data["enforce"] = False
        elif mode == "off":
            data["enabled"] = False
        elif mode != "block":
            raise ValueError(
                f"'mode' must be 'block', 'monitor' or 'off' (got {mode!r}); it is deprecated: "
                "use 'enforce: false' for shadow mode and 'enabled: false' to turn the stage off"
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def _modsecurity_defaults(cls, data: Any) -> Any:
        # The default rule files are only checked (and parsed) when they are to be used.
        if isinstance(data, dict) and data.get("engine") == "modsecurity" and "modsecurity" not in data:
            data = {**data, "modsecurity": {}}
        return data

    @field_validator("engine")
    @classmethod
    def _check_engine(cls, engine: Engine) -> Engine:
        if engine == "modsecurity" and not modsecurity_installed():
            raise ValueError(f"engine 'modsecurity' needs the libmodsecurity package: {MODSECURITY_EXTRA}")
        return engine

    @model_validator(mode="after")
    def _check_native_only(self) -> DetectionConfig:
        if self.engine == "modsecurity":
            for name in ("categories", "exclusions"):
                if getattr(self, name):
                    raise ValueError(
                        f"'{name}' applies to the native engine only; with engine 'modsecurity' "
                        "tune the rules with 'modsecurity.directives' (e.g. SecRuleRemoveById)"
                    )
        return self

    def category_mode(self, category: Category) -> Mode:
        """What ``category`` does on this route. In shadow mode (``enforce: false``) nothing
        blocks: a blocking category is monitored, so the access log's detection record says
        what would have been blocked, and ``blocked: false``."""
        mode = self.categories.get(category, "block")
        if mode == "block" and not self.enforce:
            return "monitor"
        return mode
