"""Benchmarks: each module's main() prints figures as ratios against a baseline it measures in the same run."""
