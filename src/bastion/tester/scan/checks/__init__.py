"""The scanner's checks, one module per family; each module exposes ``CHECKS: list[Check]``."""
