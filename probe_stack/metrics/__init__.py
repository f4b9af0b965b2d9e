"""The `metrics` program of the stack: one port for every process's metrics, /readyz and the page."""
