r"""SEGNN on N-body, the papers' own code and this project side by side: same arrays, seeds and budget.

    # the reference checkouts (see docs/results/reference-parity.md for how to get them)
    CR=../refs/CR/Nbody_sim          # StefanosPert/Equivariant_Optimization_CR, folder Nbody_sim
    SEGNN=../refs/SEGNN              # RobDHess/Steerable-E3-GNN
    python benchmarks/reference_parity.py data --reference $CR --out runs/parity
    python benchmarks/reference_parity.py reference --reference $SEGNN --model vanilla --seeds 0 1 2 --out runs/parity
    python benchmarks/reference_parity.py reference --reference $CR --model cr --seeds 0 --out runs/parity
    python benchmarks/reference_parity.py project --model vanilla --variant reference_init --seeds 0 --out runs/parity
    python benchmarks/reference_parity.py table --out runs/parity --plot parity.png

``data`` runs the reference's own ``generate_dataset.py --simulation=charged --seed 43 --suffix small``
(1,000 / 500 / 500 trajectories by default) once, and writes its frames 30 and 40 into the project's
N-body cache under ``OUT/cache`` (:func:`~constrained_eq.data.nbody.nbody_cache_path`), so both codes
train on the same arrays. It also prints how far the project's own simulator is from those arrays.

``reference`` copies the checkout into ``OUT/src-…`` and applies only the fixes listed in :data:`FIXES`
(CPU, this torch, no wandb, a seed from the harness), plus the named ``--fix`` ablations of the
reference's own mistakes; then runs its ``main.py`` with its N-body arguments (as its README, but
``--epochs``, ``--max_samples``, ``--lr`` from here) in one thread and parses what it prints.
``project`` runs ``ceq run`` on ``problems/nbody_segnn*.yaml`` with the same budget, plus the
overrides of a named ``--variant`` (:data:`VARIANTS`). Each run is a JSON file in ``OUT/runs``;
``table`` prints the test MSE (at each code's best validation evaluation) as mean ± std per
(code, model, variant, fix), and plots the validation curves.

The test suite never needs the reference: this script is the only place that reads it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The reference's N-body arguments (its README), minus what the harness sets.
REFERENCE_ARGS = ["--dataset=nbody", "--model=segnn", "--lmax_h=1", "--lmax_attr=1", "--layers=4",
                  "--hidden_features=64", "--subspace_type=weightbalanced", "--norm=none", "--batch_size=100",
                  "--weight_decay=1e-12", "--gpus=0", "--test_interval=5"]
# The smallest fixes that make the reference run here: (file, old, new, why).
FIXES = [
    ("nbody/train_nbody.py", "from torch_scatter import scatter", "from torch_geometric.utils import scatter",
     "torch_scatter does not build here; PyG's scatter has the same signature and maths"),
    ("nbody/train_nbody.py", "torch.manual_seed(42)", "pass  # seeded by the harness",
     "Steerable-E3-GNN fixes seed 42 at import; the harness seeds torch, numpy and random instead"),
    ("nbody/train_nbody.py", ".to('cuda')", "", "the per-batch rotation is moved to CUDA; on CPU it stays"),
    ("models/segnn/segnn.py", ".to('cuda')", "", "CR's Lie-bracket generators are moved to CUDA"),
]
# Ablations of the reference's own mistakes (switched one at a time with --fix).
REFERENCE_FIXES = {
    "centre": ("nbody/train_nbody.py", "mean_pos = pos.mean(1, keepdims=True)",
               "mean_pos = scatter(pos, graph.batch, dim=0, reduce='mean')[graph.batch]",
               "centre positions on each graph's centroid, not on the mean of a node's own x, y, z "
               "(that mean is not rotation-equivariant)"),
    "no_rotation": ("nbody/train_nbody.py", "random_rotation=o3.rand_matrix(1).squeeze(0)",
                    "random_rotation=torch.eye(3)", "CR's code: no random rotation of every batch"),
}
WANDB_STUB = "def init(*args, **kwargs):\n    pass\n\n\ndef log(*args, **kwargs):\n    pass\n"
LAUNCHER = """import random, runpy, sys
import numpy, torch
seed = int(sys.argv[1])
torch.set_num_threads(1)
torch.manual_seed(seed); numpy.random.seed(seed); random.seed(seed)
sys.argv = ["main.py"] + sys.argv[2:]
runpy.run_path("main.py", run_name="__main__")
"""
# The project's side: which problem file and strategy is each model, and named variants (--set overrides).
PROBLEMS = {"vanilla": ("problems/nbody_segnn.yaml", ["strategy=vanilla"]),
            "cr": ("problems/nbody_segnn_cr.yaml", []),
            "ace": ("problems/nbody_segnn.yaml", [])}
REFERENCE_INIT = ["model.options.weight_init=uniform", "model.options.weight_scaling=true",
                  "model.options.bias_init=uniform"]
REFERENCE_ENCODING = ["model.options.edge_vector=x_j-x_i", "model.options.distance=norm",
                      "model.options.attr_scalar=1.0"]
# The SEGNN options before the problem files took SEGNN's own initialisation and encoding.
PREVIOUS_DEFAULTS = ["model.options.weight_init=normal", "model.options.weight_scaling=false",
                     "model.options.bias_init=zero", "model.options.edge_vector=x_i-x_j",
                     "model.options.distance=squared", "model.options.attr_scalar=null"]
VARIANTS = {
    "default": [],
    "previous_defaults": PREVIOUS_DEFAULTS,
    "weight_scaling": ["model.options.weight_scaling=true"],
    "weight_init": ["model.options.weight_init=uniform"],
    "bias_init": ["model.options.bias_init=uniform"],
    "edge_vector": ["model.options.edge_vector=x_j-x_i"],
    "distance": ["model.options.distance=norm"],
    "attr_scalar": ["model.options.attr_scalar=1.0"],
    "reference_init": REFERENCE_INIT,
    "reference_encoding": REFERENCE_ENCODING,
    "reference_all": REFERENCE_INIT + REFERENCE_ENCODING,
}
# Leave-one-out from the reference's initialisation, and each encoding choice on top of it.
VARIANTS.update({f"reference_init-{name}": [s for s in REFERENCE_INIT if name not in s]
                 for name in ("weight_init", "weight_scaling", "bias_init")})
VARIANTS.update({f"reference_init+{name}": REFERENCE_INIT + VARIANTS[name]
                 for name in ("edge_vector", "distance", "attr_scalar")})
# Every named variant but "default" starts from the previous defaults, so its name keeps its meaning
# whatever the problem files say (they now carry "reference_all").
VARIANTS = {name: sets if name == "default" else [*PREVIOUS_DEFAULTS, *sets] for name, sets in VARIANTS.items()}
SPLITS = {"train": 1000, "val": 500, "test": 500}


def _cache_params(n: dict[str, int]) -> dict:
    return dict(n_train=n["train"], n_val=n["val"], n_test=n["test"], seed=43, clip="axis", field=None,
                frame_in=30, frame_out=40)


def make_data(reference: Path, out: Path, n: dict[str, int]) -> None:
    """Generate the arrays with the reference's simulator and write them into the project's cache."""
    from constrained_eq.data.nbody import nbody_cache_path, simulate_nbody

    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "loc_test_charged5_initvel1small.npy").exists():
        for name in ("generate_dataset.py", "synthetic_sim.py"):
            shutil.copy(reference / "nbody" / "dataset" / name, folder / name)
        subprocess.run([sys.executable, "-u", "generate_dataset.py", "--simulation=charged", "--seed", "43",
                        "--suffix", "small", "--num-train", str(n["train"]), "--num-valid", str(n["val"]),
                        "--num-test", str(n["test"])], cwd=folder, check=True, stdout=subprocess.DEVNULL)
    arrays = {}
    for split, suffix in (("train", "train"), ("val", "valid"), ("test", "test")):
        loc = np.load(folder / f"loc_{suffix}_charged5_initvel1small.npy").transpose(0, 1, 3, 2)  # (n, T, N, 3)
        vel = np.load(folder / f"vel_{suffix}_charged5_initvel1small.npy").transpose(0, 1, 3, 2)
        charges = np.load(folder / f"charges_{suffix}_charged5_initvel1small.npy")
        arrays.update({f"{split}_loc": loc[:, 30], f"{split}_vel": vel[:, 30], f"{split}_target": loc[:, 40],
                       f"{split}_charges": charges.reshape(len(charges), -1).astype(np.float64)})
    path = nbody_cache_path(out / "cache", **_cache_params(n))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    ours = simulate_nbody(n_train=min(n["train"], 50), n_val=0, n_test=0)
    gap = np.abs(ours["train_target"] - arrays["train_target"][: len(ours["train_target"])]).max()
    print(f"wrote {path}; the project's simulator on the first {len(ours['train_target'])} training "
          f"trajectories: max |Δ target| = {gap:.2e}")


def _patch(src: Path, fixes: list[tuple[str, str, str, str]]) -> None:
    for file, old, new, _why in fixes:
        path = src / file
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, new))


def run_reference(reference: Path, model: str, seed: int, args: argparse.Namespace) -> dict:
    """Run the reference's main.py on the harness's data; return its parsed learning curves."""
    name = "-".join(["reference", model, *sorted(args.fix)])
    src = args.out / f"src-{name}"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(reference, src, ignore=shutil.ignore_patterns("*.npy", "__pycache__", "assets"))
    _patch(src, FIXES + [REFERENCE_FIXES[f] for f in args.fix])
    (src / "wandb.py").write_text(WANDB_STUB)
    (src / "parity_launcher.py").write_text(LAUNCHER)
    for npy in (args.out / "data").glob("*.npy"):
        (src / "nbody" / "dataset" / npy.name).unlink(missing_ok=True)
        os.link(npy, src / "nbody" / "dataset" / npy.name)
    cmd = [sys.executable, "parity_launcher.py", str(seed), *REFERENCE_ARGS, f"--epochs={args.epochs}",
           f"--max_samples={args.n_train}", f"--lr={args.lr}", f"--save_dir={args.out / 'reference_checkpoints'}"]
    if "--exp_name" in (src / "main.py").read_text():  # CR's code saves checkpoints under it
        cmd.append(f"--exp_name={name}-s{seed}")
    if model == "cr":
        cmd.append("--cycle")
    curves, best, seconds = run_reference_script(cmd, src)
    return {"code": "reference", "model": model, "variant": "+".join(sorted(args.fix)) or "as-is", "seed": seed,
            "test": best[1], "best_val": best[0], "best_epoch": int(best[2]),
            "val_curve": curves["val"], "train_curve": curves["train"], "seconds": seconds}


def run_reference_script(cmd: list[str], src: Path) -> tuple[dict[str, dict[int, float]], tuple, float]:
    """Run a reference's training script in ``src`` (one thread) and parse what it prints.

    Returns the ``train/val/test`` curves (epoch as it prints it → MSE), the last ``(best val, best test,
    best epoch)`` line, and the seconds it took.
    """
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise RuntimeError(f"the reference failed:\n{proc.stderr[-3000:]}")
    curves: dict[str, dict[int, float]] = {"train": {}, "val": {}, "test": {}}
    for split, epoch, loss in re.findall(r"(train|val|test) epoch (\d+) avg loss: ([\d.]+)", proc.stdout):
        curves[split][int(epoch)] = float(loss)
    best = re.findall(r"Best Val Loss: ([\d.]+)\s+Best Test Loss: ([\d.]+)\s+Best epoch (\d+)", proc.stdout)[-1]
    return curves, (float(best[0]), float(best[1]), int(best[2])), time.perf_counter() - start


def ceq_run(problem: Path, folder: Path, sets: list[str], *flags: str) -> tuple[dict, list[dict], float]:
    """``ceq run problem --out folder --set …`` in one thread (resuming a run stopped part-way).

    Returns metrics.json, the rows of history.csv and the seconds the command took.
    """
    stopped = folder.exists() and any(folder.glob("*/checkpoint.pt"))
    cmd = [sys.executable, "-m", "constrained_eq", "run", str(problem), "--out", str(folder),
           "--resume" if stopped else "--overwrite", *flags]
    for item in sets:
        cmd += ["--set", item]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise RuntimeError(f"ceq run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    run_dir = next(folder.iterdir())
    with open(run_dir / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    return json.loads((run_dir / "metrics.json").read_text()), rows, time.perf_counter() - start


def run_project(model: str, variant: str, seed: int, args: argparse.Namespace) -> dict:
    """``ceq run`` on the model's problem file with the harness's data, budget and the variant's overrides."""
    problem, extra = PROBLEMS[model]
    folder = args.out / "project" / f"{model}-{variant}-s{seed}"
    sets = [*extra, *VARIANTS[variant], *args.set, f"task.options.root={args.out / 'cache'}",
            f"task.options.n_train={args.n_train}", f"task.options.n_val={SPLITS['val']}",
            f"task.options.n_test={SPLITS['test']}", f"training.seed={seed}", f"training.epochs={args.epochs}",
            f"optimizer.lr={args.lr}", "training.eval_every=1"]
    metrics, rows, seconds = ceq_run(ROOT / problem, folder, sets, "--allow-infeasible")  # a verdict is read
    column = "val_loss" if model == "vanilla" else "val_projected_loss"
    rows = [r for r in rows if r.get(column)]
    val = {int(r["epoch"]): float(r[column]) for r in rows}
    deployed = metrics["test_projected"] if "test_projected" in metrics else metrics["test"]
    return {"code": "project", "model": model, "variant": "+".join([variant, *args.set]) if args.set else variant,
            "seed": seed, "test": deployed["loss"], "best_val": min(val.values()), "best_epoch": min(val, key=val.get),
            "val_curve": val, "train_curve": {int(r["epoch"]): float(r["train_loss"]) for r in rows},
            "equivariance_error": deployed.get("equivariance_error"), "seconds": seconds}


def _save(out: Path, record: dict) -> None:
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    name = f"{record['code']}-{record['model']}-{record['variant']}-s{record['seed']}".replace("/", "_")
    (runs / f"{name}.json").write_text(json.dumps(record, indent=1))
    print(f"{name}: test {record['test']:.5f}, best val {record['best_val']:.5f} (epoch {record['best_epoch']}), "
          f"{record['seconds']:.0f} s", flush=True)


def lie_check(reference: Path, out: Path) -> None:
    """CR's Lie-derivative term on an exactly equivariant ``W`` (an e3nn ``o3.Linear``): the reference's and ours."""
    import torch
    from e3nn import o3

    from constrained_eq.symmetry.reps import IrrepsRep

    src = out / "src-lie"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(reference, src, ignore=shutil.ignore_patterns("*.npy", "__pycache__", "assets"))
    _patch(src, FIXES)
    sys.path.insert(0, str(src))
    from models.segnn.segnn import LinearAppr  # the reference's CR branch

    torch.manual_seed(0)
    irreps_in, irreps_out = o3.Irreps("32x0e+32x1o+32x0e+32x1o"), o3.Irreps("32x0e+32x1o")  # update_layer_1's
    equivariant = o3.Linear(irreps_in, irreps_out)
    matrix = equivariant(torch.eye(irreps_in.dim))  # (in, out): x ↦ x @ matrix, exactly equivariant
    branch = LinearAppr(irreps_in, irreps_out)
    branch.equiv, branch.mix_coef = False, 1.0
    with torch.no_grad():
        branch.lin.weight.copy_(matrix.T)
    x = torch.randn(100, irreps_in.dim)
    _, reference_term, norm = branch(x)
    a_in, a_out = IrrepsRep(irreps_in).lie_algebra(), IrrepsRep(irreps_out).lie_algebra()
    ours = sum(((x @ a_in[k].T) @ matrix - (x @ matrix) @ a_out[k].T).pow(2).sum() for k in range(3))
    print(f"equivariant W, 100 random inputs: ‖Wx‖² = {norm.item():.4g}; the reference's ‖L_A W x‖² = "
          f"{reference_term.item():.4g}; the project's Σ_k ‖W A_k x − A_k W x‖² = {ours.item():.3g}")


def table(out: Path, plot: Path | None) -> None:
    """Mean ± std of the test MSE per (code, model, variant); validation curves to ``plot``."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for path in sorted((out / "runs").glob("*.json")):
        rec = json.loads(path.read_text())
        groups.setdefault((rec["code"], rec["model"], rec["variant"]), []).append(rec)
    print(f"{'code':10s} {'model':8s} {'variant':34s} {'seeds':>5s} {'test MSE':>20s} {'best val':>9s} {'s/run':>6s}")
    for (code, model, variant), recs in sorted(groups.items()):
        tests = [r["test"] for r in recs]
        spread = statistics.stdev(tests) if len(tests) > 1 else float("nan")
        print(f"{code:10s} {model:8s} {variant:34s} {len(recs):5d} {statistics.mean(tests):9.5f} ± {spread:.5f}"
              f" {statistics.mean(r['best_val'] for r in recs):9.5f}"
              f" {statistics.mean(r['seconds'] for r in recs):6.0f}")
    if plot is not None:
        _plot(groups, plot)


def _curve(recs: list[dict]) -> tuple[list[int], np.ndarray]:
    """Epochs every run evaluated, and the validation MSE per run (runs × epochs)."""
    epochs = sorted(set.intersection(*(set(map(int, r["val_curve"])) for r in recs)))
    return epochs, np.array([[r["val_curve"][str(e)] for e in epochs] for r in recs])


def _plot(groups: dict[tuple[str, str, str], list[dict]], plot: Path) -> None:
    """Left: the parity runs (each code as is / as committed), mean ± std over seeds. Right: the ablation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colours = {"vanilla": "tab:blue", "cr": "tab:orange", "ace": "tab:green"}
    for (code, model, variant), recs in sorted(groups.items()):
        if (code, variant) not in (("reference", "as-is"), ("project", "reference_all")):
            continue
        epochs, values = _curve(recs)
        mean, std = values.mean(0), values.std(0)
        label = f"{'SEGNN/CR code' if code == 'reference' else 'project'}: {model} ({len(recs)} seeds)"
        left.plot(epochs, mean, "--" if code == "reference" else "-", color=colours[model], label=label)
        left.fill_between(epochs, mean - std, mean + std, color=colours[model], alpha=0.12)
    left.set(yscale="log", xlabel="epoch", ylabel="validation MSE", title="parity: mean ± std over seeds")
    left.legend(fontsize=8)
    right.set_prop_cycle(color=plt.cm.tab20.colors)
    for (code, model, variant), recs in sorted(groups.items()):
        seed0 = [r for r in recs if r["seed"] == 0]
        if model != "vanilla" or not seed0:
            continue
        epochs, values = _curve(seed0)
        style = "--" if code == "reference" else "-"
        right.plot(epochs, values[0], style, lw=1.2, label=f"{'SEGNN code' if code == 'reference' else 'project'}:"
                                                             f" {variant}")
    right.set(yscale="log", xlabel="epoch", title="ablation: vanilla SEGNN, seed 0")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    print(f"wrote {plot}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["data", "reference", "project", "table", "lie"])
    parser.add_argument("--reference", type=Path, help="the reference's N-body folder (data, reference)")
    parser.add_argument("--out", type=Path, default=Path("runs/parity"))
    parser.add_argument("--model", choices=sorted(PROBLEMS), default="vanilla")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="default", help="project overrides")
    parser.add_argument("--set", action="append", default=[], help="more project overrides, KEY=VALUE")
    parser.add_argument("--fix", action="append", default=[], choices=sorted(REFERENCE_FIXES),
                        help="ablate one of the reference's own mistakes (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--n-train", type=int, default=SPLITS["train"])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    needs_reference = args.what in ("data", "reference", "lie")
    if needs_reference and (args.reference is None or not (args.reference / "main.py").exists()):
        parser.error("--reference must name the reference's N-body folder (the one holding main.py)")
    if args.what == "data":
        make_data(args.reference.resolve(), args.out, {**SPLITS, "train": args.n_train})
    elif args.what == "lie":
        lie_check(args.reference.resolve(), args.out)
    elif args.what == "table":
        table(args.out, args.plot)
    else:
        if not (args.out / "cache").exists():
            parser.error(f"no data under {args.out}: run 'data' first")
        for seed in args.seeds:
            record = (run_reference(args.reference.resolve(), args.model, seed, args) if args.what == "reference"
                      else run_project(args.model, args.variant, seed, args))
            _save(args.out, record)


if __name__ == "__main__":
    main()
