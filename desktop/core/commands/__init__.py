"""One module per ``cxr-screener`` subcommand (see :mod:`desktop.core.cli`)."""
