"""Test-wide settings: hypothesis draws the same examples on every run (set
HYPOTHESIS_PROFILE=explore to draw fresh ones), so a test run is reproducible."""

import os

from hypothesis import settings

settings.register_profile("reproducible", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))
