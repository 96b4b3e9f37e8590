"""The ``sarlab`` command: ``sarlab data ...``, ``sarlab run ...``, ``sarlab bench ...``.

Each subcommand lives beside the code it drives; a module joins the command line
by exposing ``register_cli(subparsers)`` that adds its parser and sets ``func``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sarlab.errors import SarlabError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (imports of the subcommand modules happen here)."""
    from sarlab import benchmarks, embed_cli, run_cli
    from sarlab.io import manifest

    parser = argparse.ArgumentParser(prog="sarlab", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (manifest, run_cli, embed_cli, benchmarks):
        module.register_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad input exits 2 with a one-line message instead of a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except SarlabError as error:
        print(f"sarlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what was running has recorded itself as interrupted
        print(f"sarlab {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
