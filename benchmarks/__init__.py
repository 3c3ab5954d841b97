"""Benchmarks: jaxnets against hand-written Flax and PyTorch on the same work (issue 2)."""
