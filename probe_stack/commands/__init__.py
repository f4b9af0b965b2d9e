"""The `probe` command's subcommands: what an operator, the container and the tests type."""
