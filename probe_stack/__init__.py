"""The application that runs the sender and the listener, in rooms by noun.

- `commands/`: what an operator types (`probe status`, `check`, `health`, the parser).
- `runtime/`: the supervised stack (`probe run` and `probe ctl`, its locks, the watcher it
  becomes, the supervisord eventlistener `lifecycle`).
- `metrics/`: the `metrics` program (the server, its directory, the status page).
- `verdict/`: what the store's facts mean (one rule, readiness, the figures), read by both the
  page and `probe status`.

The commands may use every other room; the runtime and the metrics program never import the
commands, and the verdict imports none of the three (tests/test_imports.py holds these).
"""
