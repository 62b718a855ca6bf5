"""Make the collection importable as ansible_collections.kvmops.kvm for pytest."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, '.venv', 'collections')
if os.path.isdir(os.path.join(COLLECTIONS, 'ansible_collections', 'kvmops', 'kvm')) and COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
