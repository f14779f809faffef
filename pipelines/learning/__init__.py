"""The learning math: pure Polars, SciPy and NumPy over frames, never a Dagster context."""
