"""PAYMENT_FAILED: raised by a pushed event (the billing system's failed charge) and cleared by
the next one (the payment went through). See engine.alerts.raise_event / clear_event."""

from detectors.base import EventKind

PAYMENT_FAILED = EventKind(kind="PAYMENT_FAILED", key_prefix="payment_failed", severity="critical")
