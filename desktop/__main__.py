"""``python -m desktop`` is the same as the ``cxr-screener`` command."""

from desktop.core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
