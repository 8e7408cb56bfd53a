"""The `streamd` command line: one module per command group; `serve` loads the server lazily."""
