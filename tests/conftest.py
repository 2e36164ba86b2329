"""Test configuration: hypothesis profiles.

``HYPOTHESIS_PROFILE=long python -m pytest`` runs every property test with 10x the examples
(the fuzz tests of the parser and loaders with thousands of cases).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
