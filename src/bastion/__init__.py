"""Bastion: an API security gateway driven by your OpenAPI document."""

__version__ = "0.1.0"
__all__ = ["__version__"]
