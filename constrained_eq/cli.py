"""The ``ceq`` command: run, compare and report problem files. No logic of its own.

Usage::

    ceq run problems/toy.yaml [--resume] [--overwrite] [--out runs/] [--epochs N] [--seed S]
                              [--strategy NAME] [--device cpu|cuda] [--quiet]
    ceq compare problems/a.yaml problems/b.yaml [--strategies vanilla,ace_equality,...] [--out runs/]
    ceq report runs/toy
    ceq --debug run …  (show the traceback of an error instead of its one line)

Under ``torchrun --nproc_per_node=N -m constrained_eq.cli run …`` (or ``torchrun … $(which ceq) run …``)
the run is data-parallel: see docs/distributed.md.

Mistakes in a problem file or on the command line print ``ceq: error: <file>:<line>: …`` and exit
with status 2. A run stopped by a fault (NaN/Inf, diverging duals) prints ``ceq: error: <file>: training
stopped: …`` and exits with status 1; its last checkpoint is intact. Any other failure (a read-only or
full disk, out of memory, a bug) prints one line with the path and what to do and exits with status 1;
``ceq --debug …`` shows its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _device(name: str) -> str:
    import torch

    if name not in ("cpu", "cuda"):
        raise ValueError(f"Expected '--device' to be one of 'cpu', 'cuda' (got {name!r})")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("Expected '--device' to be 'cpu' on this machine (got 'cuda': CUDA is not available)")
    return name


def _load(file: str, args: argparse.Namespace, strategy: str | None = None) -> dict[str, Any]:
    from constrained_eq.problem_file import load_problem_file

    overrides: dict[str, Any] = {}
    if getattr(args, "epochs", None) is not None:
        overrides["training.epochs"] = args.epochs
    if getattr(args, "seed", None) is not None:
        overrides["training.seed"] = args.seed
    if strategy is not None:
        overrides["strategy"] = strategy
    return load_problem_file(file, overrides)


def _run_dir(out: str, file: str, strategy: str | None) -> Path:
    from constrained_eq.runs import run_folder

    return run_folder(out, file, strategy)  # a safe name, inside --out


def _allow_change(values: Sequence[str] | None) -> tuple[str, ...]:
    from constrained_eq.build import ALLOWED_CHANGES

    keys = tuple(k.strip() for v in values or () for k in v.split(",") if k.strip())
    for key in keys:
        if key not in ALLOWED_CHANGES:
            raise ValueError(f"Expected '--allow-change' to list keys among {', '.join(ALLOWED_CHANGES)} (got {key!r})")
    return keys


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def _metric_value(summary: dict[str, Any], key: str) -> float | None:
    metric = summary.get("metric", "loss")
    return summary.get(key, {}).get(metric)


@contextlib.contextmanager
def _torchrun(device: str) -> Iterator[tuple[Any, str]]:
    """Join torchrun's process group when launched by it: yields ``(context or None, device)``."""
    import torch.distributed as dist

    from constrained_eq import distributed

    context = distributed.init_from_env(device)
    if context is None:
        yield None, device
        return
    try:
        if context.is_main:
            print(f"torchrun: {context.world_size} processes ({context.backend}); training.batch_size is the global "
                  f"batch, {context.world_size} shards of it per step")
        yield context, str(context.device)
        dist.barrier()  # leave together: no rank tears the process group down while another still uses it
    finally:
        dist.destroy_process_group()


def cmd_run(args: argparse.Namespace) -> int:
    from constrained_eq.build import run_problem

    spec = _load(args.file, args, args.strategy)
    run_dir = _run_dir(args.out, args.file, args.strategy)
    allow_change = _allow_change(args.allow_change)
    if allow_change and not args.resume:
        raise ValueError("Expected '--allow-change' together with '--resume' (it lists what a resumed run may change)")
    with _torchrun(_device(args.device)) as (context, device):
        summary = run_problem(spec, run_dir, resume=args.resume, overwrite=args.overwrite, device=device,
                              progress=not args.quiet, context=context, allow_change=allow_change)
    if not summary:  # ranks other than 0 print nothing
        return 0
    print(f"run folder: {run_dir}")
    print(f"strategy {summary['strategy']} (formulation {summary['formulation']}), best epoch {summary['best_epoch']}: "
          + ", ".join(f"{k} {_fmt(v)}" for k, v in summary["best"].items()))
    for key in ("test", "test_projected"):
        print(f"{key}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in summary[key].items()))
    print(f"seconds: {summary['wall_seconds']:.1f}")
    if "distributed" in summary:
        shared = summary["distributed"]
        print(f"ranks agree: max difference of γ, λ, u and weight fingerprints across {shared['world_size']} "
              f"processes = {shared['max_rank_difference']:g}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from constrained_eq import distributed
    from constrained_eq.build import run_problem
    from constrained_eq.problem_file import STRATEGIES

    device = _device(args.device)
    strategies: list[str | None] = [None]
    if args.strategies:
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        for s in strategies:
            if s not in STRATEGIES:
                raise ValueError(f"Expected '--strategies' to list names among {', '.join(map(repr, STRATEGIES))} "
                                 f"(got {s!r})")
    jobs = [(file, s, _load(file, args, s)) for file in args.files for s in strategies]  # validate all first
    rows = []
    with _torchrun(device) as (context, device):
        for file, strategy, spec in jobs:
            run_dir = _run_dir(args.out, file, strategy)
            resume = distributed.on_main(lambda run_dir=run_dir: (run_dir / "checkpoint.pt").exists())
            summary = run_problem(spec, run_dir, resume=resume, device=device, progress=not args.quiet,
                                  context=context)
            if summary:  # rank 0 (or a single process)
                rows.append([file, summary["strategy"], summary["formulation"],
                             _fmt(summary["best"].get("val_loss")), _fmt(_metric_value(summary, "test_projected")),
                             _fmt(_metric_value(summary, "test")), f"{summary['wall_seconds']:.1f}"])
    if not rows:  # ranks other than 0 print nothing
        return 0
    header = ["file", "strategy", "formulation", "best val", "test (projected)", "test (unprojected)", "seconds"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from constrained_eq.build import write_symmetry_report
    from constrained_eq.plots import plot_run
    from constrained_eq.runs import read_json

    run_dir = Path(args.run_dir)
    if not (run_dir / "history.csv").exists():
        raise ValueError(f"Expected '{run_dir}' to be a run folder with history.csv (found none); "
                         "pass the folder `ceq run` printed")
    summary = read_json(run_dir / "metrics.json")
    print(json.dumps(summary, indent=2, sort_keys=True))
    for path in plot_run(run_dir):
        print(f"wrote {path}")
    report = write_symmetry_report(run_dir)
    if report is not None:
        print(report)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ceq", description="Run constrained-learning problem files.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train one problem file into a run folder")
    run.add_argument("file")
    run.add_argument("--resume", action="store_true", help="continue the run folder's checkpoint")
    run.add_argument("--overwrite", action="store_true", help="start an existing run folder again")
    run.add_argument("--allow-change", action="append", default=None, metavar="KEY[,KEY]",
                     help="with --resume: keys that may differ from the run's problem (optimizer.lr, "
                          "training.epochs, dual_lr, ...); recorded in problem.json")
    compare = sub.add_parser("compare", help="run several problem files (or strategies) and print one table")
    compare.add_argument("files", nargs="+")
    compare.add_argument("--strategies", default=None, help="comma-separated strategies to run on every file")
    for p in (run, compare):
        p.add_argument("--out", default="runs", help="parent folder of the run folders (default: runs)")
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--strategy", default=None, help="override the file's strategy")
    report = sub.add_parser("report", help="print a run's summary and write its plots")
    report.add_argument("run_dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ceq`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    commands = {"run": cmd_run, "compare": cmd_compare, "report": cmd_report}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print("ceq: interrupted; continue with `ceq run <file> --resume`", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        status, message = _one_line(err, args)
        print(f"ceq: error: {message}", file=sys.stderr)
        return status


def _one_line(err: BaseException, args: argparse.Namespace) -> tuple[int, str]:
    """Exit status and one-line message of any error (``--debug`` shows the traceback instead)."""
    where = getattr(args, "file", None) or getattr(args, "run_dir", None) or ", ".join(getattr(args, "files", []))
    text = " ".join(str(err).split())
    if isinstance(err, FloatingPointError):  # NonFiniteError, DivergenceError: training stopped, checkpoint intact
        return 1, f"{where}: training stopped: {text}"
    if isinstance(err, ValueError | TypeError):
        return 2, text
    if isinstance(err, OSError):
        path = err.filename or where
        reason = err.strerror or text
        return 1, (f"{path}: {reason}; check that the folder exists and is writable and that the disk has space, "
                   "or choose another --out (the last checkpoint is intact)")
    if isinstance(err, MemoryError):
        return 1, (f"{where}: out of memory; lower training.batch_size, the model's width (hidden, ...) or the "
                   "dataset size (n_train, limit, ...)")
    if isinstance(err, RecursionError):
        return 2, f"{where}: nesting too deep ({text}); simplify the file"
    return 1, f"{where}: {type(err).__name__}: {text[:500]}; rerun with --debug for the traceback"


if __name__ == "__main__":
    sys.exit(main())
