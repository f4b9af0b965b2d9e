"""The parts of docs/ written from a source, not by hand: not part of the running probe.

A page that restates figures, modules or settings drifts from them unless it is generated:
docs/performance.md from bench/results/, the layout table of docs/development.md from each
module's docstring, the settings table of docs/settings.md from `probe config docs`.
`make docs` writes them; a test checks them. Nothing of the project is imported here.
"""
