"""Evaluation: TECH/HOUSE benchmarks, RP@K and MRR with bootstrap intervals."""
