"""Headless library: configuration, registry, bundles, ledger, governance, drift, latency, fleet.

Nothing under ``modelfleet.core`` may import Textual (tests/unit/test_import_hygiene.py checks it).
"""
