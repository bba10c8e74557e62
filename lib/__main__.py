"""Command line: ``python -m lib run|book|assets|train``.

* ``python -m lib run --profile cpu [--chapters 01 02] [--out DIR] [--in-place]``: execute
  chapters with papermill (see :mod:`lib.tooling.runner`); a chapter unchanged since an earlier run
  (source, the ``lib`` modules it imports, weights, profile) is reused, not executed;
  ``--rerun`` executes it anyway, ``--no-cache`` also recomputes every cached result.
  ``--in-place`` writes into the committed ``book/*.ipynb`` and their record ``book/run.json``.
* ``python -m lib book --profile cpu [--run DIR]``: execute every chapter (a new run), or take
  an existing run with ``--run``, then build the HTML book from it (see :mod:`lib.tooling.book`).
* ``python -m lib bench [--quick] [--device cuda] [--out FILE]``: the hot loops against the
  bare network, as ratios beside their goals (see :mod:`lib.tooling.bench`).
* ``python -m lib book --committed``: build from the committed notebooks, executing nothing
  (their record, ``book/run.json``, ends each chapter; the Colab cells install ``HEAD``).
* ``python -m lib train --model tiny-a [--steps N] [--max-minutes M] [--publish [--force]]``:
  train an embedded model (resuming from ``runs/train/<name>/checkpoint.pt``), export its EMA
  weights, measure its quality, and with ``--publish`` copy it to ``data/models`` (see
  :mod:`lib.tooling.train`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute chapters with papermill")
    run.add_argument("--profile", default="cpu", help="cpu (default), gpu, sd, or mini (toy sizes, for tests)")
    run.add_argument("--chapters", nargs="*", help="chapter names or numbers (default: all)")
    run.add_argument("--out", help="output folder (default: a new runs/PROFILE/<time>/)")
    run.add_argument("--in-place", action="store_true",
                     help="write outputs into the committed book/*.ipynb (cpu profile only)")
    book = sub.add_parser("book", help="run the chapters, then build the HTML book")
    book.add_argument("--profile", default="cpu", help="cpu (default), gpu, sd, or mini (toy sizes, for tests)")
    src = book.add_mutually_exclusive_group()
    src.add_argument("--run", help="build from this existing run folder instead of executing")
    src.add_argument("--committed", action="store_true",
                     help="build from the committed book/*.ipynb, executing nothing")
    for p in (run, book):
        p.add_argument("--rerun", action="store_true",
                       help="execute every chapter, even those unchanged since an earlier "
                            "run, and rebuild the HTML")
        p.add_argument("--no-cache", action="store_true",
                       help="compute everything afresh: no cached results (LIB_NO_CACHE=1), "
                            "no reused chapters")
    sub.add_parser("assets", help="fetch the scripts the book serves itself (npm registry)")
    bn = sub.add_parser("bench", help="measure the hot loops against the bare network (ratios)")
    bn.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    bn.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats (a smoke run)")
    bn.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    bn.add_argument("--sd-unet", action="store_true",
                    help="also time an SD-2.1-sized UNet (always on a GPU)")
    bn.add_argument("--threads", type=int, help="torch CPU threads")
    bn.add_argument("--out", help="JSON file to write (default: a new runs/bench/<time>.json)")
    tr = sub.add_parser("train", help="train, export and evaluate an embedded model")
    tr.add_argument("--model", required=True, choices=["tiny-a", "tiny-b"])
    tr.add_argument("--steps", type=int, help="total optimizer steps (default: the model's config)")
    tr.add_argument("--max-minutes", type=float, help="stop after this long (a checkpoint is saved)")
    tr.add_argument("--out", help="training folder (default runs/train/MODEL)")
    tr.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    tr.add_argument("--threads", type=int, help="torch CPU threads")
    tr.add_argument("--no-bf16", action="store_true", help="train in float32 (slower)")
    tr.add_argument("--samples", type=int, default=1000, help="samples for the quality numbers")
    tr.add_argument("--slim", action="store_true",
                    help="then drop the optimizer's moments from the checkpoint (half the size, "
                         "to move it between machines; training resumes with a new LR warmup)")
    tr.add_argument("--publish", action="store_true", help="copy the model to data/models/MODEL")
    tr.add_argument("--force", action="store_true", help="with --publish: replace the committed model")
    args = parser.parse_args(argv)
    if getattr(args, "no_cache", False):
        from lib.cache import NO_CACHE_ENV

        os.environ[NO_CACHE_ENV] = "1"  # the chapters' kernels inherit it
    reuse = not getattr(args, "rerun", False)

    from lib.tooling.runner import ChapterFailed, run_chapters

    try:
        if args.command == "run":
            run_chapters(args.profile, args.chapters, args.out, in_place=args.in_place,
                         reuse=reuse)
        elif args.command == "train":
            _train(args)
        elif args.command == "bench":
            _bench(args)
        elif args.command == "assets":
            from lib.tooling.book import fetch_assets

            print(fetch_assets())
        else:
            from lib.tooling.book import build_book

            if args.committed:
                build_book(None, label="committed", force=not reuse)
            else:
                run_dir = (Path(args.run) if args.run
                           else run_chapters(args.profile, reuse=reuse)[0])
                if not (run_dir / "book").is_dir():
                    raise FileNotFoundError(f"{run_dir} is not a run folder (no book/ inside)")
                build_book(run_dir / "book", label=args.profile, force=not reuse)
    except ChapterFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _bench(args) -> None:
    import torch

    from lib.tooling.bench import format_table, run_bench, write_result

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_bench(device=args.device, quick=args.quick, compile=not args.no_compile,
                       sd_unet=True if args.sd_unet else None,
                       log=lambda line: print(line, file=sys.stderr))
    print(format_table(result))
    print(f"\nwritten to {write_result(result, args.out)}")


def _train(args) -> None:
    import torch

    from lib.tooling.train import evaluate, export, publish, slim_checkpoint, train

    if args.force and not args.publish:
        raise ValueError("--force only applies with --publish")
    if args.threads:
        torch.set_num_threads(args.threads)
    state = train(args.model, steps=args.steps, out=args.out, device=args.device,
                  bf16=not args.no_bf16, max_minutes=args.max_minutes)
    print(f"{args.model}: {state['step']} steps, {state['seconds'] / 60:.1f} min of training in all")
    folder = export(args.model, out=args.out)
    if args.slim:
        print(f"slim checkpoint: {slim_checkpoint(args.model, out=args.out)}")
    card = evaluate(folder, n=args.samples)
    vs = card["quality"]["samples_vs_test"]
    print(f"model card: {folder / 'README.md'} (meets the quality bar: {vs['meets_bar']})")
    if args.publish:
        print(f"published to {publish(args.model, out=args.out, force=args.force)}")


if __name__ == "__main__":
    sys.exit(main())
