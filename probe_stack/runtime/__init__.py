"""The supervised stack: `probe run`, what it holds (locks, run directory), what it becomes."""
