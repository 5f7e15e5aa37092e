r"""Hyperparameter sweeps on Optuna: ``ceq sweep F --param optimizer.lr=loguniform:1e-4:1e-2 --seeds 0,1,2``.

A sweep draws values for some keys of a problem file (any key ``--set`` can set), runs each
configuration on every seed as an ordinary run folder ``<sweep>/trial-NNNN/seed-S/``, and scores the
trial by the mean over seeds of the run's selection metric — the ``evaluation.select`` column at the
epoch ``fit`` picked (``metrics.json``: ``best[select]``), minimised, or maximised for an accuracy.

Parameters (``--param KEY=SPEC``: ``choice:a,b,c``, ``loguniform:low:high``, ``uniform:low:high``,
``int:low:high``) and sweep files are read and checked by :mod:`constrained_eq.run.sweep_file`.

When every parameter is a ``choice`` the sweep walks the grid (Optuna's ``GridSampler``; the
default number of trials is the grid's size), otherwise it samples with TPE.

Trials live in an Optuna study: by default a SQLite file ``study.db`` in the sweep folder, so that
``--workers K`` local processes share it; ``--storage postgresql://…`` (or ``mysql://…``) lets
processes on several machines draw trials of one study (docs/distributed.md). The sweep folder also
gets ``results.csv``, ``results.md`` and ``sweep.png``.

A *sweep file* holds the same in YAML (``sweeps/*.yaml``)::

    problem: ../problems/nbody_full.yaml      # relative to the sweep file
    set: {strategy: ace_equality}              # overrides, as --set
    params:
      optimizer.lr: choice:5e-4,8e-4,9e-4,1e-3,5e-3
      dual_lr: choice:5e-5,1e-4,8e-4
    seeds: [0, 1, 2, 3, 4]

Optuna is an optional extra: ``pip install 'constrained_eq[sweep]'``.
"""

from __future__ import annotations

import io
import itertools
import math
import multiprocessing
import os
import re
import socket
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from constrained_eq._utils.atomic_io import atomic_write_bytes, atomic_write_text, refuse_link
from constrained_eq.run.sweep_file import Sweep, check_sweep

if TYPE_CHECKING:  # the model imports torch; a sweep loads it with its first trial
    from constrained_eq.run.problem_model import Problem

__all__ = ["run_sweep", "require_optuna", "results_table"]

_WORKER = f"{socket.gethostname()}:{os.getpid()}"  # recorded on each trial: a rerun knows whose it is
_INTERRUPTED = 130  # a worker's exit status after Ctrl-C (as a shell's)


def require_optuna() -> Any:
    """Import Optuna, or say which extra installs it."""
    try:
        import optuna
    except ImportError as err:
        raise ImportError("ceq sweep needs Optuna: pip install 'constrained_eq[sweep]' (or pip install optuna) "
                          f"({err})") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _direction(problem: Problem) -> str:
    """``"maximize"`` when ``evaluation.select`` is a metric the task wants large (an accuracy)."""
    from constrained_eq.tasks import get_task

    select = problem.evaluation.select
    if select == "auto":
        return "minimize"  # the validation loss of the model or of its projection
    task = get_task(problem.task.name)
    return "maximize" if select.removeprefix("val_") in task.higher_is_better else "minimize"


def _storage(optuna: Any, url: str) -> Any:
    """An RDB storage; SQLite waits for its lock instead of failing when several workers write.

    Raises:
        ValueError: Naming the URL when it cannot be parsed, its database driver is missing or it cannot
            be opened (SQLAlchemy's own error in one line after it).
    """
    kwargs = {"engine_kwargs": {"connect_args": {"timeout": 120}}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except Exception as err:  # SQLAlchemy's ArgumentError, OperationalError, ImportError for a missing driver
        reason = " ".join(str(err).split("(Background on this error")[0].split())
        raise ValueError(f"--storage {shown_url(url)}: cannot open the study storage ({type(err).__name__}: "
                         f"{reason}); give a database URL such as sqlite:////path/to/study.db (the folder must "
                         "exist) or postgresql://user@host/db (with its driver installed)") from None


def shown_url(url: str) -> str:
    """``url`` with its password hidden, for messages: ``postgresql://me:***@host/db``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _sampler(optuna: Any, sweep: Sweep, worker: int) -> Any:
    """TPE (a grid is walked by :func:`_ask`, which fixes each trial's values before the sampler is asked)."""
    return optuna.samplers.TPESampler(seed=worker, n_startup_trials=max(4, len(sweep.params) * 2))


def _ask(optuna: Any, study: Any, sweep: Sweep, total: int) -> Any:
    """The next trial, or ``None`` when ``total`` trials are finished or running (call under the lock).

    A trial counts once it is running, finished, or failed with a recorded error (a run that diverged:
    trying it again would diverge again); a trial marked failed by hand does not, and its point is run
    again. For a grid, the trial gets the first grid point that no counted trial holds, so that workers
    never run the same point twice.
    """
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    live = [t for t in trials if t.state != states.FAIL or "error" in t.user_attrs]
    if len(live) >= total:
        return None
    grid = sweep.grid
    if grid is not None:
        taken = {tuple(repr(t.params.get(name)) for name in grid) for t in live}
        points = (dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values()))
        point = next((p for p in points if tuple(repr(v) for v in p.values()) not in taken), None)
        if point is None:
            return None
        study.enqueue_trial(point)
    return study.ask()


def _trial_problem(sweep: Sweep, values: Mapping[str, Any], seed: int | None) -> Problem:
    """The sweep's problem file with the trial's values (and seed) set, loaded as a typed ``Problem``."""
    from constrained_eq.run.overrides import Override
    from constrained_eq.run.problem_file import load_problem

    overrides = [*sweep.overrides, *(Override(tuple(p.name.split(".")), values[p.name], p.origin)
                                     for p in sweep.params)]
    if seed is not None:
        overrides.append(Override(("training", "seed"), seed, f"--seeds {seed}"))
    return load_problem(sweep.problem, overrides)


def run_trial(sweep: Sweep, number: int, values: Mapping[str, Any]) -> tuple[float, dict[str, Any]]:
    """Run one configuration on every seed; return the mean selection metric and per-seed details."""
    from constrained_eq.run.runner import run_problem

    scores, details = [], {}
    for seed in sweep.seeds or [None]:
        problem = _trial_problem(sweep, values, seed)
        seed = problem.training.seed
        run_dir = sweep.folder / f"trial-{number:04d}" / f"seed-{seed}"
        summary = run_problem(problem, run_dir, overwrite=True, device=sweep.device, progress=not sweep.quiet)
        score = summary.get("best", {}).get(summary.get("select"), math.nan)
        scores.append(score)
        details[f"seed_{seed}"] = score
        details[f"seed_{seed}_test_projected"] = summary["test_projected"].get("loss")
    details["run_dirs"] = str(sweep.folder / f"trial-{number:04d}")
    return statistics.fmean(scores), details


def _work(sweep: Sweep, worker: int) -> None:
    """One worker: ask a trial (under a file lock, so local workers never draw the same grid point), run, tell."""
    from filelock import FileLock

    optuna = require_optuna()
    study = optuna.load_study(study_name=sweep.name, storage=_storage(optuna, sweep.storage_url()),
                              sampler=_sampler(optuna, sweep, worker))
    total = sweep.n_trials()
    lock = FileLock(str(sweep.folder / ".ask.lock"))
    states = optuna.trial.TrialState
    while True:
        with lock:  # the values are drawn under the lock too: a trial's params are stored when suggested
            trial = _ask(optuna, study, sweep, total)
            if trial is None:
                return
            trial.set_user_attr("worker", _WORKER)
            values = {p.name: p.suggest(trial) for p in sweep.params}
        try:
            value, details = run_trial(sweep, trial.number, values)
        except KeyboardInterrupt:  # failed without an "error": the next run of the sweep runs its point again
            study.tell(trial, state=states.FAIL)
            raise
        except (FloatingPointError, ValueError) as err:  # a diverging configuration is a result, not a crash
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:500])
            study.tell(trial, state=states.FAIL)
            print(f"trial {trial.number}: {_fmt_values(values)} failed: {err}", flush=True)
            continue
        for key, detail in details.items():
            trial.set_user_attr(key, detail)
        if math.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=states.FAIL)
        print(f"trial {trial.number}: {_fmt_values(values)} -> {value:.6g}", flush=True)


def _worker_alive(worker: str) -> bool:
    """Whether the process that marked a trial ``host:pid`` may still run it (any process on another host)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return bool(host)  # another host's worker is not ours to judge; a trial without the record is stale
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: is there such a process?
    except ProcessLookupError:
        return False
    except PermissionError:  # there is, run by someone else
        return True
    return True


def requeue_stale_trials(optuna: Any, study: Any) -> list[int]:
    """Fail the RUNNING trials whose process is gone (killed, or stopped by Ctrl-C before it could say so).

    A trial failed without an ``error`` is not counted by :func:`_ask`, so its point is run again. Trials
    of a process that is still alive, or of another host sharing the storage, are left alone.

    Returns:
        The numbers of the trials that were re-queued.
    """
    stale = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
             if not _worker_alive(str(t.user_attrs.get("worker", "")))]
    for number in stale:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    return stale


def _fmt_values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def run_sweep(sweep: Sweep) -> Path:
    """Create (or continue) the study, run the trials on ``sweep.workers`` processes, write the results.

    Returns:
        Path: The sweep folder (``results.csv``, ``results.md``, ``sweep.png``, ``trial-*/seed-*/``).
    """
    optuna = require_optuna()
    check_sweep(sweep)
    if sweep.storage:  # a storage of the user's is opened before anything is written
        _storage(optuna, sweep.storage)
    for path in (sweep.folder, sweep.folder / "study.db", sweep.folder / ".ask.lock"):
        refuse_link(path)  # SQLite and the lock would write into a link's target
    sweep.folder.mkdir(parents=True, exist_ok=True)
    direction = _direction(_trial_problem(sweep, {p.name: p.values[0] for p in sweep.params}, None))
    study = optuna.create_study(study_name=sweep.name, storage=_storage(optuna, sweep.storage_url()),
                                direction=direction, load_if_exists=True)
    stale = requeue_stale_trials(optuna, study)
    if stale:
        print(f"trials {', '.join(map(str, stale))} were left running by a stopped sweep: running their points again",
              flush=True)
    if sweep.workers == 1:
        _work(sweep, 0)
    else:
        _run_workers(sweep)
    study = optuna.load_study(study_name=sweep.name, storage=_storage(optuna, sweep.storage_url()))
    write_results(sweep, study)
    _check_complete(optuna, study, sweep.n_trials())
    return sweep.folder


def _run_workers(sweep: Sweep) -> None:
    """``sweep.workers`` spawned processes; Ctrl-C stops them all (each fails its running trial quietly)."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_quiet_work, args=(sweep, worker)) for worker in range(sweep.workers)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:  # they received the same Ctrl-C; wait until each has failed its trial
            process.join()
        raise
    crashed = [p.exitcode for p in processes if p.exitcode not in (0, _INTERRUPTED)]
    if crashed:
        raise RuntimeError(f"{len(crashed)} of {sweep.workers} sweep workers exited with an error "
                           f"(exit codes {crashed}); see their output above")
    if any(p.exitcode == _INTERRUPTED for p in processes):
        raise KeyboardInterrupt


def _quiet_work(sweep: Sweep, worker: int) -> None:
    """:func:`_work` in a spawned process: Ctrl-C ends it with :data:`_INTERRUPTED`, not a traceback."""
    try:
        _work(sweep, worker)
    except KeyboardInterrupt:
        sys.exit(_INTERRUPTED)


def _check_complete(optuna: Any, study: Any, total: int) -> None:
    """Raise if fewer than ``total`` trials finished (complete, or failed with a recorded error)."""
    states = optuna.trial.TrialState
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == states.COMPLETE or (t.state == states.FAIL and "error" in t.user_attrs)]
    if len(done) < total:
        raise RuntimeError(f"{study.study_name}: {len(done)} of {total} trials finished; run the same `ceq sweep` "
                           "command again to run the others")


def results_table(sweep: Sweep, study: Any) -> tuple[list[str], list[list[Any]]]:
    """Header and rows (best first) of the study's trials: parameters, per-seed scores, mean, state."""
    seeds = sweep.seeds or [None]
    seed_keys = [k for t in study.trials for k in t.user_attrs if k.startswith("seed_") and
                 not k.endswith("_test_projected")]
    seed_keys = list(dict.fromkeys(seed_keys)) or [f"seed_{s}" for s in seeds]
    header = ["trial", "state", *(p.name for p in sweep.params), "objective", *seed_keys, "run folder"]
    rows = []
    for trial in study.trials:
        rows.append([trial.number, trial.state.name, *(trial.params.get(p.name) for p in sweep.params),
                     trial.value, *(trial.user_attrs.get(k) for k in seed_keys),
                     trial.user_attrs.get("run_dirs", "")])
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    rows.sort(key=lambda r: (r[header.index("objective")] is None,
                             sign * (r[header.index("objective")] or 0.0), r[0]))
    return header, rows


def write_results(sweep: Sweep, study: Any) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and ``sweep.png`` into the sweep folder; return their paths."""
    import csv

    header, rows = results_table(sweep, study)
    csv_path, md_path = sweep.folder / "results.csv", sweep.folder / "results.md"
    table = io.StringIO()
    csv.writer(table).writerows([header, *rows])
    atomic_write_text(csv_path, table.getvalue())  # links in the sweep folder are replaced, never followed
    text = [_cell(c) for c in header]
    lines = ["| " + " | ".join(text) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    direction = "largest" if study.direction.name == "MAXIMIZE" else "smallest"
    atomic_write_text(md_path, f"Sweep `{sweep.name}` of `{sweep.problem}`: objective = mean over seeds of the "
                               f"run's selection metric ({direction} is best).\n\n" + "\n".join(lines) + "\n")
    return [csv_path, md_path, plot_sweep(sweep, header, rows)]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value).replace("|", "\\|")


def plot_sweep(sweep: Sweep, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """``sweep.png``: the objective of each finished trial against each parameter, and against the trial number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r[1] == "COMPLETE"]
    objective = header.index("objective")
    seed_columns = [i for i, h in enumerate(header) if h.startswith("seed_")]
    panels = len(sweep.params) + 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), squeeze=False)
    for ax, param in zip(axes[0], sweep.params, strict=False):
        column = header.index(param.name)
        numeric = all(isinstance(r[column], int | float) and not isinstance(r[column], bool) for r in done)
        xs = [r[column] if numeric else str(r[column]) for r in done]
        for n, i in enumerate(seed_columns):
            ax.scatter(xs, [r[i] for r in done], s=12, color="0.6", zorder=1, label="each seed" if n == 0 else None)
        ax.scatter(xs, [r[objective] for r in done], s=40, color="C0", zorder=2, label="mean over seeds")
        if numeric and done and (param.kind == "loguniform" or (min(xs) > 0 and max(xs) / min(xs) >= 10)):
            ax.set_xscale("log")
        ax.set_xlabel(param.name)
        ax.set_ylabel("selection metric (validation)")
    ax = axes[0][-1]
    ax.plot([r[0] for r in sorted(done)], [r[objective] for r in sorted(done)], "o-", color="C1")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    if done:
        best = done[0]
        ax.set_title(f"best: trial {best[0]} ({best[objective]:.4g})", fontsize=9)
        axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{sweep.name}: {len(done)} finished trials", fontsize=10)
    fig.tight_layout()
    path = sweep.folder / "sweep.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
