"""Test material that tests and benchmarks share (never used by the product at run time)."""
