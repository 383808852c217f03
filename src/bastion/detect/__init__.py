"""Threat detectors: a record sink that counts attack patterns in the state backend and
raises deduplicated alerts, delivered to webhooks (see docs/detectors.md)."""

from bastion.detect.alerts import Alert, AlertDelivery, signature
from bastion.detect.sink import Detectors

__all__ = ["Alert", "AlertDelivery", "Detectors", "signature"]
