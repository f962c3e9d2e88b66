"""The market's rules as pure numpy functions and small classes (no Mesa import):
similarity, gain, clearing, payments, personalized aggregation and named presets."""

from mechanisms.ipfl import utilities
from mechanisms.presets import MarketOutcome, Mechanism, available, check_settings, get

__all__ = ["MarketOutcome", "Mechanism", "available", "check_settings", "get", "utilities"]
