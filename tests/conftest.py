"""Test configuration: Hypothesis runs derandomized, so CI is reproducible.

Set ``HYPOTHESIS_PROFILE=explore`` to search with fresh random examples.
"""

import os
import sys
from pathlib import Path

from hypothesis import settings

# Worker processes that tests spawn unpickle functions by module name (``tests.…``); with
# pytest's importlib import mode the repository root is not on sys.path, and spawned
# children inherit the parent's sys.path, so put it there.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
