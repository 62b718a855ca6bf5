"""Make the collection importable as ansible_collections.kvmops.kvm for pytest."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, '.venv', 'collections')
if os.path.isdir(os.path.join(COLLECTIONS, 'ansible_collections', 'kvmops', 'kvm')) and COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

# Property tests (hypothesis). `make test` is the gate CI runs, so it explores a fixed, reproducible set of
# examples (HYPOTHESIS_PROFILE=ci: derandomized, no example database); `make unit` and a bare pytest explore
# new random examples every run, which is where new counter-examples are found and then pinned as cases.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # the integration tier can run without hypothesis installed
    _hypothesis_settings = None
if _hypothesis_settings is not None:
    _hypothesis_settings.register_profile('ci', derandomize=True, database=None, print_blob=True)
    _hypothesis_settings.register_profile('explore', print_blob=True)
    _hypothesis_settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'explore'))
