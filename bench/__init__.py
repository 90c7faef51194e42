"""Benchmarks for agent-orders: `python -m bench [scenario ...]`, never part of the tests."""
