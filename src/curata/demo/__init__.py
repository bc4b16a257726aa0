"""Demo data: synthetic studies and planted identifiers for tests and benchmarks."""
