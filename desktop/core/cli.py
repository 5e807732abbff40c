"""``cxr-screener``: the command-line contract scripts and tests rely on.

Each subcommand lives in ``desktop/core/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a
function ``(args) -> int``. Command modules import only argparse at module
level so that start-up stays fast; heavy imports happen in the handler.

Exit codes: 0 success, 1 some input failed (the others were processed),
2 usage error (bad arguments, unknown model, output exists...).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from desktop import __version__

#: Subcommands, in the order ``--help`` lists them.
COMMANDS = ("predict", "scan", "render", "report", "calibrate", "listen", "watch", "models", "selftest", "gui")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cxr-screener",
        description="Offline chest X-ray COVID-19 screening (decision support, not a diagnosis).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    parser.add_argument("--allow-unverified", action="store_true", help=_ALLOW_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"desktop.core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"desktop.core.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    # Accepted before or after the subcommand: `cxr-screener --allow-unverified predict ...` or `predict --allow-unverified`.
    for p in sub.choices.values():
        p.add_argument("--allow-unverified", dest="allow_unverified", action="store_true", default=argparse.SUPPRESS,
                       help=_ALLOW_HELP)  # fmt: skip
    return parser


_ALLOW_HELP = "use model bundles that are neither pinned in the application nor signed by a trusted key"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from desktop.core.errors import CXRError

    if getattr(args, "allow_unverified", False):
        from desktop.core.bundle.trust import set_allow_unverified

        set_allow_unverified(True)
    try:
        return int(handler(args))
    except CXRError as exc:
        _stderr(f"cxr-screener {args.command}: {exc}")
        return EXIT_USAGE if getattr(exc, "kind", "").startswith(("output", "model")) else EXIT_FAILED
    except KeyboardInterrupt:
        _stderr("cxr-screener: interrupted")
        return 130


def _setup_logging(verbose: bool) -> None:
    # Windowed (frozen) builds have no stderr: never assume it exists.
    if sys.stderr is None:
        logging.basicConfig(level=logging.WARNING, handlers=[logging.NullHandler()])
        return
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _stderr(message: str) -> None:
    if sys.stderr is not None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


if __name__ == "__main__":
    raise SystemExit(main())
