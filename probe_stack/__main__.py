"""`python -m probe_stack`: the `probe` command where its console script is not at hand.

`probe run` prints it for another terminal when .venv/bin/probe is missing; it names the
application, not a room of it, so the runtime never names the commands.
"""

from probe_stack.commands.cli import main

raise SystemExit(main())
