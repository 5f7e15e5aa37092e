r"""EGNN on N-body, the EGNN paper's own code and this project side by side: same arrays, seeds and budget.

    # the reference: vgsatorras/egnn at e9ca6c0 (docs/results/reference-parity-egnn.md says how to get it)
    EGNN=../refs/egnn
    # the arrays, once: the SEGNN harness's `data` (the EGNN generator, charged, seed 43, 1,000/500/500)
    python benchmarks/reference_parity.py data --reference ../refs/CR/Nbody_sim --out runs/parity
    export OMP_NUM_THREADS=1
    python benchmarks/reference_parity_egnn.py check --reference $EGNN
    python benchmarks/reference_parity_egnn.py reference --reference $EGNN --seeds 0 1 2 3 4 5 --epochs 200
    python benchmarks/reference_parity_egnn.py project --seeds 0 1 2 3 4 5 --epochs 200
    python benchmarks/reference_parity_egnn.py check --reference $EGNN \
        --weights runs/parity_egnn/project/default-s0/nbody_full/best.pt
    python benchmarks/reference_parity_egnn.py table --seeds 0 1 2
    python benchmarks/reference_parity_egnn.py table --plot runs/parity_egnn/parity_egnn.png

``check`` loads one set of weights (the reference's initialisation, or a trained project checkpoint)
into the reference's ``EGNN_vel`` and the project's ``EGNN``, feeds each the 500 test graphs encoded
its own way, and prints the largest differences of inputs, outputs and gradients and both test MSEs.

``reference`` copies the checkout into ``OUT/src-reference``, links the arrays of ``--data`` into its
``n_body_system/dataset/`` and runs its own ``main_nbody.py`` with the README's N-body arguments
(:data:`REFERENCE_ARGS`) plus ``--epochs``, ``--lr``, ``--seed`` from here, in one thread, through a
launcher that seeds torch, numpy and random (``main_nbody.py`` parses ``--seed`` but never uses it).
No line of the reference is changed: ``--no-cuda`` keeps it on the CPU and it needs neither wandb nor
a compiled extension. ``project`` runs ``ceq run problems/nbody_full.yaml`` (``strategy=vanilla``, the
strict EGNN_vel) with the same arrays (``--data``'s cache), split sizes, seed, epochs, lr, batch 100,
weight decay 1e-12 and validation every 5 epochs. Each run is a JSON file in ``OUT/runs`` with the
test MSE at the code's best validation evaluation, the validation curve (keyed by the number of
epochs trained) and the seconds; ``table`` is the SEGNN harness's table (mean ± std per code), over
the runs of ``--seeds`` when given.

The test suite never needs the reference: this script is the only place that reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.reference_parity import LAUNCHER, SPLITS, _save, ceq_run, run_reference_script, table  # noqa: E402

# The EGNN paper's N-body arguments (its README, main_nbody.py defaults), minus what the harness sets.
REFERENCE_ARGS = ["--model", "egnn_vel", "--nf", "64", "--n_layers", "4", "--batch_size", "100",
                  "--weight_decay", "1e-12", "--test_interval", "5", "--no-cuda"]
EVAL_EVERY = 5
# The project's side: the strict EGNN_vel (strategy vanilla) of the full protocol's problem file.
PROBLEM = "problems/nbody_full.yaml"


def run_reference(reference: Path, seed: int, args: argparse.Namespace) -> dict:
    """Run the reference's main_nbody.py on the harness's arrays; return its parsed learning curves."""
    src = args.out / "src-reference"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(reference, src, ignore=shutil.ignore_patterns("*.npy", "__pycache__", "qm9", "ae_datasets"))
    (src / "parity_launcher.py").write_text(LAUNCHER.replace("main.py", "main_nbody.py"))
    dataset = src / "n_body_system" / "dataset"
    dataset.mkdir(exist_ok=True)
    for npy in (args.data / "data").glob("*_charged5_initvel1small.npy"):
        os.link(npy, dataset / npy.name)
    cmd = [sys.executable, "parity_launcher.py", str(seed), *REFERENCE_ARGS, "--epochs", str(args.epochs),
           "--lr", str(args.lr), "--seed", str(seed), "--max_training_samples", str(args.n_train),
           "--exp_name", f"s{seed}", "--outf", str(args.out / "reference_logs")]
    printed, best, seconds = run_reference_script(cmd, src)
    curves = {split: {e + 1: v for e, v in c.items()} for split, c in printed.items()}  # its epoch e trained e + 1
    return {"code": "reference", "model": "egnn", "variant": "as-is", "seed": seed, "test": best[1],
            "best_val": best[0], "best_epoch": best[2] + 1, "val_curve": curves["val"],
            "test_curve": curves["test"], "train_curve": curves["train"], "seconds": seconds}


def run_project(seed: int, args: argparse.Namespace) -> dict:
    """``ceq run`` on the strict EGNN with the harness's data and budget, plus any ``--set`` overrides."""
    variant = "+".join(args.set) or "default"
    folder = args.out / "project" / f"{variant}-s{seed}".replace("/", "_")
    sets = ["strategy=vanilla", *args.set, f"task.options.root={args.data / 'cache'}",
            f"task.options.n_train={args.n_train}", f"task.options.n_val={SPLITS['val']}",
            f"task.options.n_test={SPLITS['test']}", f"training.seed={seed}", f"training.epochs={args.epochs}",
            f"optimizer.lr={args.lr}", "optimizer.weight_decay=1e-12", "training.batch_size=100",
            f"training.eval_every={EVAL_EVERY}", f"training.checkpoint_every={args.epochs}"]
    metrics, rows, seconds = ceq_run(ROOT / PROBLEM, folder, sets, "--quiet")
    val = {int(r["epoch"]) + 1: float(r["val_loss"]) for r in rows if r.get("val_loss")}  # epoch e: e + 1 trained
    return {"code": "project", "model": "egnn", "variant": variant, "seed": seed, "test": metrics["test"]["loss"],
            "best_val": min(val.values()), "best_epoch": min(val, key=val.get), "val_curve": val,
            "train_curve": {int(r["epoch"]) + 1: float(r["train_loss"]) for r in rows},
            "equivariance_error": metrics["test"].get("equivariance_error"), "seconds": seconds}


def check_forward(reference: Path, args: argparse.Namespace) -> None:
    """Load one set of weights into both codes' EGNN_vel and feed each its own inputs of the 500 test graphs.

    The reference's inputs as its ``main_nbody.py`` builds them (``q_i q_j`` from the generator's
    ``edges`` array), the project's by :func:`nbody_egnn_inputs` (from the charges). Weights: the
    reference's initialisation (torch seed 0), or a project checkpoint (``--weights best.pt``).
    Prints the largest output difference and, per parameter, the largest gradient difference.
    """
    import numpy as np
    import torch

    from constrained_eq.data.nbody import fully_connected_edges
    from constrained_eq.models.egnn import EGNN, nbody_egnn_inputs

    sys.path.insert(0, str(reference))
    from n_body_system.model import EGNN_vel  # the reference's model, as main_nbody.py builds it

    torch.manual_seed(0)
    theirs = EGNN_vel(in_node_nf=1, in_edge_nf=2, hidden_nf=64, n_layers=4, recurrent=True)
    ours = EGNN(1, 64, 4, relaxed=False)
    if args.weights:
        ours.load_state_dict(torch.load(args.weights, weights_only=False)["model"])
        theirs.load_state_dict({re.sub(r"^layers\.(\d+)", r"gcl_\1", k): v for k, v in ours.state_dict().items()})
    else:
        ours.load_state_dict({re.sub(r"^gcl_(\d+)", r"layers.\1", k): v for k, v in theirs.state_dict().items()})
    arrays = {name: np.load(args.data / "data" / f"{name}_test_charged5_initvel1small.npy")
              for name in ("loc", "vel", "charges", "edges")}
    loc, vel = (torch.Tensor(arrays[k][:, 30].transpose(0, 2, 1).reshape(-1, 3)) for k in ("loc", "vel"))
    edges = fully_connected_edges(len(arrays["loc"]), 5)
    row, col = edges
    # the reference: edge_attr = [edges[:, i, j], ‖x_i − x_j‖²] for i ≠ j, h = ‖v‖ (main_nbody.py, egnn_vel)
    mask = ~np.eye(5, dtype=bool)
    q_edges = torch.Tensor(arrays["edges"][:, mask].reshape(-1, 1))
    ref_attr = torch.cat([q_edges, torch.sum((loc[row] - loc[col]) ** 2, 1).unsqueeze(1)], 1)
    ref_h = torch.sqrt(torch.sum(vel**2, dim=1)).unsqueeze(1)
    h, _, _, _, edge_attr, _ = nbody_egnn_inputs(loc, vel, torch.Tensor(arrays["charges"].reshape(-1, 1)), edges)
    out_theirs = theirs(ref_h, loc.clone(), [row, col], vel, ref_attr)  # it updates x in place
    out_ours = ours(h, loc.clone(), vel, edges, edge_attr)
    target = torch.Tensor(arrays["loc"][:, 40].transpose(0, 2, 1).reshape(-1, 3))
    mse = [torch.nn.functional.mse_loss(out, target).item() for out in (out_theirs, out_ours)]
    out_theirs.square().sum().backward()
    out_ours.square().sum().backward()
    grads = dict(theirs.named_parameters())
    gap = max(((p.grad - grads[re.sub(r"^layers\.(\d+)", r"gcl_\1", n)].grad).abs().max() / p.grad.abs().max()).item()
              for n, p in ours.named_parameters() if p.grad is not None)  # not the last node_mlp: h is unused
    inputs = max((ref_attr - edge_attr).abs().max().item(), (ref_h - h).abs().max().item())
    sizes = [sum(p.numel() for p in model.parameters()) for model in (theirs, ours)]
    print(f"weights: {args.weights or 'reference init, seed 0'}; 500 test graphs, reference vs project:\n"
          f"  max |Δ inputs| = {inputs:.1e}, max |Δ output| = {(out_theirs - out_ours).abs().max().item():.1e}, "
          f"test MSE {mse[0]:.5f} vs {mse[1]:.5f}\n  max |Δ grad| / max |grad| = {gap:.1e} (worst tensor), "
          f"parameters {sizes[0]} vs {sizes[1]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["check", "reference", "project", "table"])
    parser.add_argument("--reference", type=Path, help="the vgsatorras/egnn checkout (reference)")
    parser.add_argument("--data", type=Path, default=Path("runs/parity"), help="holds data/*.npy and cache/")
    parser.add_argument("--out", type=Path, default=Path("runs/parity_egnn"))
    parser.add_argument("--set", action="append", default=[], help="project overrides, KEY=VALUE (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0 (runs), all (table)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--n-train", type=int, default=SPLITS["train"])
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--weights", type=Path, help="check: a project checkpoint (best.pt) instead of an init")
    args = parser.parse_args(argv)
    args.out, args.data = args.out.resolve(), args.data.resolve()
    if args.what == "table":  # over the runs of --seeds only, when given
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "runs").mkdir()
            for path in (args.out / "runs").glob("*.json"):
                if args.seeds is None or json.loads(path.read_text())["seed"] in args.seeds:
                    (Path(tmp) / "runs" / path.name).symlink_to(path)
            table(Path(tmp), args.plot)
        return
    needs_reference = args.what in ("check", "reference")
    if needs_reference and (args.reference is None or not (args.reference / "main_nbody.py").exists()):
        parser.error("--reference must name the vgsatorras/egnn checkout (the folder holding main_nbody.py)")
    if not (args.data / "cache").exists() or not any((args.data / "data").glob("*.npy")):
        parser.error(f"no arrays under {args.data}: run benchmarks/reference_parity.py data first")
    if args.what == "check":
        check_forward(args.reference.resolve(), args)
        return
    for seed in args.seeds or [0]:
        record = (run_reference(args.reference.resolve(), seed, args) if args.what == "reference"
                  else run_project(seed, args))
        _save(args.out, record)


if __name__ == "__main__":
    main()
