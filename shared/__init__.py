"""The library both probe processes use; it imports nothing of the project above it."""

# The one place to bump the version: pyproject.toml reads it from here. Kept as a constant,
# because asking the installed package's metadata costs every process importlib.metadata
# (zipfile, csv, email: about 3 MB each).
VERSION = "0.1.0"
