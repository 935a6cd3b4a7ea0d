"""Evaluation and benchmarks: scores, per-domain reports, inference throughput."""
