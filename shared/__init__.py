"""The library both probe processes use; it imports nothing of the project above it."""
