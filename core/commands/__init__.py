"""Sub-commands of the `paddiff` CLI, one module each (see `paddiff.cli.COMMANDS`)."""
