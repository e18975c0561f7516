"""The project's own benchmark scripts (run from the repository root: python -m benchmarks.X)."""
