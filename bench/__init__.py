"""Benchmarks (not timed tests); each prints its figures and the anchor it is compared with."""
