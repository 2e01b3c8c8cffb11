"""Micro-benchmarks of distnn's building blocks."""
