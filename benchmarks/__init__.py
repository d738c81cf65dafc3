"""Benchmarks: pruning quality (``benchmarks.quality``) and speed (``benchmarks.speed``).

See docs/benchmarks.md for the commands, the machine and the published tables.
"""
