"""Command line: ``python -m lib run|book|assets``.

* ``python -m lib run --profile cpu [--chapters 01 02] [--out DIR] [--in-place]``: execute
  chapters with papermill (see :mod:`lib.runner`).
* ``python -m lib book --profile cpu [--run DIR]``: execute every chapter (a new run), or take
  an existing run with ``--run``, then build the HTML book from it (see :mod:`lib.book`).
* ``python -m lib book --committed``: build from the committed notebooks, executing nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute chapters with papermill")
    run.add_argument("--profile", default="cpu", help="cpu (default), gpu or sd")
    run.add_argument("--chapters", nargs="*", help="chapter names or numbers (default: all)")
    run.add_argument("--out", help="output folder (default: a new runs/PROFILE/<time>/)")
    run.add_argument("--in-place", action="store_true",
                     help="write outputs into the committed book/*.ipynb (cpu profile only)")
    book = sub.add_parser("book", help="run the chapters, then build the HTML book")
    book.add_argument("--profile", default="cpu", help="cpu (default), gpu or sd")
    src = book.add_mutually_exclusive_group()
    src.add_argument("--run", help="build from this existing run folder instead of executing")
    src.add_argument("--committed", action="store_true",
                     help="build from the committed book/*.ipynb, executing nothing")
    sub.add_parser("assets", help="fetch the scripts the book serves itself (npm registry)")
    args = parser.parse_args(argv)

    from lib.runner import ChapterFailed, run_chapters

    try:
        if args.command == "run":
            run_chapters(args.profile, args.chapters, args.out, in_place=args.in_place)
        elif args.command == "assets":
            from lib.book import fetch_assets

            print(fetch_assets())
        else:
            from lib.book import build_book

            if args.committed:
                build_book(None, label="committed")
            else:
                run_dir = Path(args.run) if args.run else run_chapters(args.profile)[0]
                if not (run_dir / "book").is_dir():
                    raise FileNotFoundError(f"{run_dir} is not a run folder (no book/ inside)")
                build_book(run_dir / "book", label=args.profile)
    except ChapterFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
