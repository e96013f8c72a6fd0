"""Benchmarks for mnist-jax (see benchmarks/README.md)."""
