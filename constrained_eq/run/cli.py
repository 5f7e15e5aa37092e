"""The ``ceq`` command: run, compare, sweep and report problem files. No logic of its own.

Usage::

    ceq run problems/toy.yaml [--resume] [--overwrite] [--out runs/] [--epochs N] [--seed S]
                              [--strategy NAME] [--device cpu|cuda] [--quiet] [--set KEY=VALUE ...]
    ceq compare problems/a.yaml problems/b.yaml [--strategies vanilla,ace_equality,...] [--out runs/]
                (also writes <out>/compare.csv and <out>/compare.md)
    ceq sweep problems/toy.yaml --param optimizer.lr=loguniform:1e-4:1e-2 --param dual_lr=choice:1e-3,1e-2
              [--seeds 0,1,2] [--trials N] [--workers K] [--storage URL] [--study NAME] [--out runs/]
    ceq sweep sweeps/nbody_table_a_ace_equality.yaml        (a sweep file: problem, params, seeds)
    ceq report runs/toy
    ceq --version                                  (``python -m constrained_eq`` is the same command)

``--set KEY=VALUE`` (run, compare, sweep) overrides any key of the file by its dotted path; a refused
value is reported as ``<file>: --set KEY=VALUE: …``.
    ceq --debug run …  (show the traceback of an error instead of its one line)

Under ``torchrun --nproc_per_node=N -m constrained_eq.run.cli run …`` (or ``torchrun … $(which ceq) run …``)
the run is data-parallel: see docs/distributed.md.

Mistakes in a problem file or on the command line print ``ceq: error: <file>:<line>: …`` and exit
with status 2. A run stopped by a fault (NaN/Inf, diverging duals) prints ``ceq: error: <file>: training
stopped: …`` and exits with status 1; its last checkpoint is intact. Any other failure (a read-only or
full disk, out of memory, a bug) prints one line with the path and what to do and exits with status 1;
``ceq --debug …`` shows its traceback. A run that finishes but whose deployed model violates a hard constraint
(its certificate, :mod:`constrained_eq.training.certificate`), or with a constraint judged likely infeasible in
training, exits with status 3 (:data:`EXIT_INFEASIBLE`); ``ceq run --allow-infeasible`` exits 0 instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from constrained_eq.run.cli_output import fmt, print_feasibility, print_run

__all__ = ["main", "EXIT_INFEASIBLE"]

EXIT_INFEASIBLE = 3  # ceq run: the deployed model violates a hard constraint, or one is likely infeasible


def _device(name: str) -> str:
    import torch

    if name not in ("cpu", "cuda"):
        raise ValueError(f"Expected '--device' to be one of 'cpu', 'cuda' (got {name!r})")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("Expected '--device' to be 'cpu' on this machine (got 'cuda': CUDA is not available)")
    return name


def _folder(text: str) -> str:
    """``--out``: a folder name; an empty one would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name is no folder; write --out . for the current folder")
    return text


def _load(file: str, args: argparse.Namespace, strategy: str | None = None) -> Any:
    from constrained_eq.run.overrides import Override, parse_set
    from constrained_eq.run.problem_yaml import read_yaml

    overrides = [parse_set(text) for text in getattr(args, "set", None) or []]
    read_yaml(Path(file))  # a missing, oversized or malformed file is reported before torch is imported

    from constrained_eq.run.problem_file import load_problem

    if getattr(args, "epochs", None) is not None:
        overrides.append(Override(("training", "epochs"), args.epochs, f"--epochs {args.epochs}"))
    if getattr(args, "seed", None) is not None:
        overrides.append(Override(("training", "seed"), args.seed, f"--seed {args.seed}"))
    if strategy is not None:
        overrides.append(Override(("strategy",), strategy, f"--strategy {strategy}"))
    return load_problem(file, overrides)  # a typed Problem


def _run_dir(out: str, file: str, strategy: str | None) -> Path:
    from constrained_eq.training.run_folder import run_folder

    return run_folder(out, file, strategy)  # a safe name, inside --out


def _allow_change(values: Sequence[str] | None) -> tuple[str, ...]:
    from constrained_eq.run.run_dir import ALLOWED_CHANGES

    keys = tuple(k.strip() for v in values or () for k in v.split(",") if k.strip())
    for key in keys:
        if key not in ALLOWED_CHANGES:
            raise ValueError(f"Expected '--allow-change' to list keys among {', '.join(ALLOWED_CHANGES)} (got {key!r})")
    return keys


def _metric_value(summary: dict[str, Any], key: str) -> float | None:
    metric = summary.get("metric", "loss")
    return summary.get(key, {}).get(metric)


@contextlib.contextmanager
def _torchrun(device: str) -> Iterator[tuple[Any, str]]:
    """Join torchrun's process group when launched by it: yields ``(context or None, device)``."""
    import torch.distributed as dist

    from constrained_eq._utils import distributed

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
        distributed.destroy()  # frees the Solver/DDP reference cycle while the group lives


def cmd_run(args: argparse.Namespace) -> int:
    problem = _load(args.file, args, args.strategy)

    from constrained_eq.run.runner import run_problem

    run_dir = _run_dir(args.out, args.file, args.strategy)
    allow_change = _allow_change(args.allow_change)
    if allow_change and not args.resume:
        raise ValueError("Expected '--allow-change' together with '--resume' (it lists what a resumed run may change)")
    with _torchrun(_device(args.device)) as (context, device):
        summary = run_problem(problem, run_dir, resume=args.resume, overwrite=args.overwrite, device=device,
                              progress=not args.quiet, context=context, allow_change=allow_change,
                              on_summary=lambda summary: print_run(run_dir, summary))  # before the plots
    if not summary:  # ranks other than 0 print nothing
        return 0
    from constrained_eq.training.certificate import exit_status

    return exit_status(summary.get("certificate"), args.allow_infeasible, EXIT_INFEASIBLE)


def cmd_compare(args: argparse.Namespace) -> int:
    from constrained_eq.run.problem_yaml import read_yaml

    for file in args.files:  # a missing or malformed file is reported before torch is imported
        read_yaml(Path(file))
    from constrained_eq._utils import distributed
    from constrained_eq.run.runner import run_problem
    from constrained_eq.run.strategies import STRATEGIES

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
        for file, strategy, problem in jobs:
            run_dir = _run_dir(args.out, file, strategy)
            resume = distributed.on_main(lambda run_dir=run_dir: (run_dir / "checkpoint.pt").exists())
            summary = run_problem(problem, run_dir, resume=resume, device=device, progress=not args.quiet,
                                  context=context)
            if summary:  # rank 0 (or a single process)
                rows.append([file, summary["strategy"], summary["formulation"],
                             fmt(summary["best"].get("val_loss")), fmt(_metric_value(summary, "test_projected")),
                             fmt(_metric_value(summary, "test")), f"{summary['wall_seconds']:.1f}"])
    if not rows:  # ranks other than 0 print nothing
        return 0
    header = ["file", "strategy", "formulation", "best val", "test (projected)", "test (unprojected)", "seconds"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    for path in _save_table(Path(args.out) / "compare", header, rows):
        print(f"wrote {path}")
    return 0


def _save_table(stem: Path, header: list[str], rows: list[list[Any]]) -> list[Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` (a Markdown table) of ``rows``; return both paths."""
    import csv
    import io

    from constrained_eq._utils.atomic_io import atomic_write_text

    table = io.StringIO()
    csv.writer(table).writerows([header, *rows])
    atomic_write_text(stem.with_suffix(".csv"), table.getvalue())  # a link is replaced, never followed
    cells = [[str(c).replace("|", "\\|") for c in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(header),
             *("| " + " | ".join(row) + " |" for row in cells[1:])]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    return [stem.with_suffix(".csv"), stem.with_suffix(".md")]


def _sweep_of(args: argparse.Namespace) -> Any:
    """The :class:`~constrained_eq.run.sweep_file.Sweep` of ``ceq sweep``: a problem file or a sweep file."""
    from constrained_eq.run.overrides import Override, parse_set
    from constrained_eq.run.sweep import require_optuna
    from constrained_eq.run.sweep_file import Sweep, load_sweep, parse_param

    is_sweep_file = _is_sweep_file(args.file)  # a bad file is refused before Optuna and torch are imported
    try:
        require_optuna()
    except ImportError as err:
        raise ValueError(str(err)) from None
    problem, params, seeds, trials, overrides, study = Path(args.file), [], None, None, [], None
    if is_sweep_file:
        loaded = load_sweep(args.file)
        problem, params, seeds = loaded["problem"], loaded["params"], loaded.get("seeds")
        trials, study = loaded.get("trials"), loaded.get("study")
        overrides = [Override(tuple(k.split(".")), v, f"{args.file}:{loaded['set_lines'][k]}: set {k}")
                     for k, v in loaded.get("set", {}).items()]
    overrides += [parse_set(text) for text in args.set]
    if args.epochs is not None:
        overrides.append(Override(("training", "epochs"), args.epochs, f"--epochs {args.epochs}"))
    named = {p.name: p for p in params}
    given = [parse_param(text) for text in args.param]
    for i, param in enumerate(given):
        twice = [p for p in given[:i] if p.name == param.name]
        if twice:
            raise ValueError(f"Expected each --param key once (got '{twice[0].origin}' and '{param.origin}')")
    named.update({p.name: p for p in given})  # --param wins over the sweep file's params
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"Expected '--seeds' to be integers separated by commas (got {args.seeds!r})") from None
    for flag, value in (("--trials", args.trials), ("--workers", args.workers)):
        if value is not None and value < 1:
            raise ValueError(f"Expected '{flag}' to be an integer ≥ 1 (got {value})")
    return Sweep(problem, list(named.values()), seeds, args.trials or trials, overrides, args.study or study,
                 args.storage, args.workers, Path(args.out), _device(args.device), quiet=not args.progress)


def _is_sweep_file(file: str) -> bool:
    from constrained_eq.run.problem_yaml import read_yaml

    raw = read_yaml(Path(file))  # missing, too large, too deep, an alias bomb: refused here, naming the line
    return isinstance(raw, dict) and "problem" in raw


def cmd_sweep(args: argparse.Namespace) -> int:
    from constrained_eq.run.sweep import run_sweep, shown_url
    from constrained_eq.run.sweep_file import check_sweep

    sweep = _sweep_of(args)
    check_sweep(sweep)  # every value of every parameter, before any output or run
    print(f"sweep {sweep.name}: {sweep.n_trials()} trials of {len(sweep.seeds or [None])} seed(s) on "
          f"{sweep.workers} worker(s); study in {shown_url(sweep.storage_url())}")
    try:
        folder = run_sweep(sweep)
    except RuntimeError as err:  # a worker process crashed; its traceback is printed above
        print(f"ceq: error: {args.file}: {err}", file=sys.stderr)
        return 1
    for name in ("results.csv", "results.md", "sweep.png"):
        print(f"wrote {folder / name}")
    lines = (folder / "results.md").read_text(encoding="utf-8").splitlines()
    print("\n".join(lines[2:5]))  # header, rule and the best trial
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from constrained_eq.run.plots import plot_run
    from constrained_eq.run.runner import write_constraint_report, write_symmetry_report
    from constrained_eq.training.run_folder import read_csv, read_json

    run_dir = Path(args.run_dir)
    if not (run_dir / "history.csv").exists():
        raise ValueError(f"Expected '{run_dir}' to be a run folder with history.csv (found none); "
                         "pass the folder `ceq run` printed")
    if "epoch" not in read_csv(run_dir / "history.csv"):
        raise ValueError(f"Expected '{run_dir / 'history.csv'}' to be a history written by ceq run or fit (it has "
                         "no 'epoch' column); pass the folder `ceq run` printed")
    summary = read_json(run_dir / "metrics.json")
    print(json.dumps(summary, indent=2, sort_keys=True))
    for path in plot_run(run_dir):
        print(f"wrote {path}")
    constraints = write_constraint_report(run_dir)
    if constraints is not None:
        print(constraints)
    report = write_symmetry_report(run_dir)  # homotopy (γ) constraints only
    if report is not None:
        print(report)
    print_feasibility(summary)
    return 0


def _parser() -> argparse.ArgumentParser:
    from constrained_eq import __version__

    parser = argparse.ArgumentParser(prog="ceq", description="Run constrained-learning problem files.")
    parser.add_argument("--version", action="version", version=f"constrained_eq {__version__}")
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
        p.add_argument("--out", default="runs", type=_folder, help="parent folder of the run folders (default: runs)")
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key of the problem file, e.g. --set optimizer.lr=5e-3 (repeatable)")
    run.add_argument("--strategy", default=None, help="override the file's strategy")
    run.add_argument("--allow-infeasible", action="store_true",
                     help="exit 0 even when the deployed model violates a hard constraint or one is likely "
                          f"infeasible (default: exit status {EXIT_INFEASIBLE})")
    sweep = sub.add_parser("sweep", help="run an Optuna sweep over keys of a problem file (the 'sweep' extra)")
    sweep.add_argument("file", help="a problem file, or a sweep file (with 'problem:' and 'params:')")
    sweep.add_argument("--param", action="append", default=[], metavar="KEY=KIND:VALUES",
                       help="a swept key: choice:a,b,c | loguniform:lo:hi | uniform:lo:hi | int:lo:hi (repeatable)")
    sweep.add_argument("--seeds", default=None, help="comma-separated seeds run for every trial (default: the file's)")
    sweep.add_argument("--trials", type=int, default=None, help="number of trials (default: the grid's size)")
    sweep.add_argument("--workers", type=int, default=1, help="local worker processes (default: 1)")
    sweep.add_argument("--storage", default=None,
                       help="Optuna storage URL shared by workers on several machines (default: SQLite in the "
                            "sweep folder)")
    sweep.add_argument("--study", default=None, help="study name and sweep folder name (default: <stem>-sweep)")
    sweep.add_argument("--out", default="runs", type=_folder, help="parent folder of the sweep folder (default: runs)")
    sweep.add_argument("--epochs", type=int, default=None)
    sweep.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    sweep.add_argument("--progress", action="store_true", help="show each run's progress bar")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key of the problem file for every trial (repeatable)")
    report = sub.add_parser("report", help="print a run's summary and write its plots")
    report.add_argument("run_dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ceq`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    commands = {"run": cmd_run, "compare": cmd_compare, "sweep": cmd_sweep, "report": cmd_report}
    try:
        return commands[args.command](args)
    except BrokenPipeError:  # the reader went away (`ceq report … | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush is quiet
        return 1
    except KeyboardInterrupt:
        again = ("run the same `ceq sweep` command again (the stopped trials run again)" if args.command == "sweep"
                 else f"continue with `ceq run {getattr(args, 'file', '<file>')} --resume`" if args.command == "run"
                 else "run the same command again")
        print(f"ceq: interrupted; {again}", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        from constrained_eq.run.cli_output import one_line

        status, message = one_line(err, getattr(args, "file", None) or getattr(args, "run_dir", None)
                                   or ", ".join(getattr(args, "files", [])))
        print(f"ceq: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
