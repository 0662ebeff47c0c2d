"""Test configuration: Hypothesis runs derandomized, so CI is reproducible.

Set ``HYPOTHESIS_PROFILE=explore`` to search with fresh random examples.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
