"""Probe ``ceq run`` as a careless user or an attacker would, and count how each probe ends.

Run against any checkout: ``PYTHONPATH=<checkout> python benchmarks/security_probes.py [--only files|faults]``.
Every probe runs ``constrained_eq.run.cli.main`` in a forked child (30 s limit, 6 GiB address space) inside
a scratch folder, and is classified as

* ``clear``: exit status ≠ 0, exactly one ``ceq: error:`` line naming a file, no traceback;
* ``traceback`` / ``unclear`` (an error without the file) / ``accepted`` (exit 0 for a bad input) / ``hang``;
* for faults: ``survived`` (the run went on, nothing lost) or ``refused`` (one clear line, nothing lost).

It also checks that no payload ran (a marker file) and that nothing outside ``--out`` changed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

BASE = """\
task:
  name: toy_rotation
  options: {n_train: 32, n_val: 16, n_test: 16}
model:
  name: vector_net
  options: {hidden: 4, n_layers: 2}
strategy: ace_equality
optimizer: {name: adam, lr: 0.01}
training: {epochs: 2, batch_size: 16}
"""
MARKER = "PAYLOAD_RAN"


def _bomb(levels: int, width: int, indent: str) -> str:
    lines = [f"{indent}l0: &l0 [{', '.join(['v'] * width)}]"]
    lines += [f"{indent}l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _files(marker: Path) -> dict[str, bytes]:
    """Malformed problem files (not those of the test suite)."""
    class _Template:
        def __init__(self, old: str, new: str) -> None:
            self.old, self.new = old, new

        def format(self, text: str) -> str:
            return BASE.replace(self.old, self.new.replace("@", text))

    tr = _Template("training: {epochs: 2, batch_size: 16}", "training: {epochs: 2, batch_size: 16, @}")
    task = _Template("options: {n_train: 32, n_val: 16, n_test: 16}", "options: {n_train: 32, @}")
    files = {
        "tag_new": BASE + f"x: !!python/object/new:pathlib.Path.touch [{marker}]\n",
        "tag_module": BASE + "x: !!python/module:os\n",
        "tag_in_constraints": BASE + f"constraints: [!!python/object/apply:os.system ['touch {marker}']]\n",
        "tag_binary_name": BASE.replace("name: vector_net", "name: !!binary dmVjdG9yX25ldA=="),
        "tag_set_top": BASE + "strategy: !!set {cr}\n",
        "tag_date_seed": task.format("data_seed: 2020-02-02"),
        "bomb_model_options": BASE.replace("  options: {hidden: 4, n_layers: 2}\n", "  options:\n"
                                           + _bomb(8, 8, "    ")),
        "bomb_constraints": BASE + "extra:\n" + _bomb(9, 7, "  ") + "constraints: [*l8]\n",
        "deep_constraints": BASE + "constraints: " + "[" * 5000 + "]" * 5000 + "\n",
        "deep_block": BASE + "".join("  " * i + f"n{i}:\n" for i in range(120)),
        "nul_comment": BASE + "# a\0b\n",
        "latin1_comment": BASE + "# r\xe9sum\xe9\n",
        "utf16_bom": None,  # filled below
        "escape_char": BASE + "# \x1b[31m\n",
        "complex_key_training": BASE.replace("training: {epochs: 2, batch_size: 16}",
                                             "training:\n  ? {x: 1}\n  : 2"),
        "int_key_options": task.format("7: 1"),
        "hidden_50000": BASE.replace("hidden: 4", "hidden: 50000"),
        "n_layers_5000": BASE.replace("n_layers: 2", "n_layers: 5000"),
        "batch_size_1e10": BASE.replace("batch_size: 16", "batch_size: 10000000000"),
        "log_every_1e15": tr.format("log_every: 1000000000000000"),
        "seed_2_70": tr.format(f"seed: {2**70}"),
        "epochs_1e9": BASE.replace("epochs: 2", "epochs: 1000000000"),
        "n_train_1e9": BASE.replace("n_train: 32", "n_train: 1000000000"),
        "points_1e8": task.format("points: 100000000"),
        "checkpoint_every_1e12": tr.format("checkpoint_every: 1000000000000"),
        "eval_every_1e12": tr.format("eval_every: 1000000000000"),
        "steps_every_1e12": tr.format("steps_every: 1000000000000"),
        "data_seed_1e20": task.format("data_seed: 100000000000000000000"),
        "dual_lr_inf": BASE + "dual_lr: .inf\n",
        "variable_lr_nan": BASE + "variable_lr: .NaN\n",
        "lr_nan": BASE.replace("lr: 0.01", "lr: .nan"),
        "weight_decay_neg_inf": BASE.replace("lr: 0.01}", "lr: 0.01, weight_decay: -.inf}"),
        "empty": "",
        "comments_2mb": BASE + ("# " + "x" * 98 + "\n") * 21_000,
        "two_documents": BASE + "---\n" + BASE,
        "undefined_alias": BASE + "dual_lr: *lr\n",
        "nested_duplicate": BASE.replace("training: {epochs: 2, batch_size: 16}",
                                         "training: {epochs: 2, epochs: 3}"),
        "egnn_hidden_1e6": "task: {name: nbody, options: {n_train: 8, n_val: 8, n_test: 8}}\n"
                           "model: {name: egnn, options: {hidden_nf: 1000000}}\n",
        "segnn_lmax_1000": "task: {name: nbody, options: {n_train: 8, n_val: 8, n_test: 8}}\n"
                           "model: {name: segnn, options: {lmax_h: 1000}}\n",
        "qm9_limit_1e12": "task: {name: qm9, options: {source: synthetic, limit: 1000000000000}}\n"
                          "model: {name: schnet}\n",
    }
    out = {k: v.encode("utf-8") if v is not None else b"" for k, v in files.items()}
    out["utf16_bom"] = BASE.encode("utf-16")
    out["latin1_comment"] = (BASE + "# r").encode() + b"\xe9sum\xe9\n"
    return out


def _run_child(argv: list[str], cwd: Path, timeout: float = 30.0) -> tuple[str, int | None, str]:
    """Fork, run ``main(argv)`` in ``cwd``; return (outcome, status, stderr)."""
    err_path = cwd / f".probe_err_{os.getpid()}_{time.monotonic_ns()}"
    pid = os.fork()
    if pid == 0:  # child
        status = 99
        try:
            resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
            os.chdir(cwd)
            fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)
            with contextlib.redirect_stdout(io.StringIO()):
                from constrained_eq.run.cli import main

                status = main(argv)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            traceback.print_exc()
            status = 98
        finally:
            sys.stderr.flush()
            os._exit(status if isinstance(status, int) else 97)
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            err = err_path.read_text(errors="replace") if err_path.exists() else ""
            err_path.unlink(missing_ok=True)
            status = os.waitstatus_to_exitcode(code)
            return ("exit", status, err)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    err_path.unlink(missing_ok=True)
    return ("hang", None, "")


def _classify(outcome: str, status: int | None, err: str, names: str) -> str:
    if outcome == "hang":
        return "hang"
    if "Traceback" in err or status in (97, 98, 99) or status is not None and status < 0:
        return "traceback"
    if status == 0:
        return "accepted"
    lines = [line for line in err.splitlines() if line.startswith("ceq: error:")]
    if len(lines) == 1 and any(n in lines[0] for n in names.split("|")):
        return "clear"
    return "unclear"


def _snapshot(folder: Path, skip: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*") if skip not in p.parents and p != skip
            and not p.name.startswith(".probe_err")}


def probe_files(scratch: Path) -> dict[str, list[str]]:
    marker = scratch / MARKER
    results: dict[str, list[str]] = {}
    for name, data in _files(marker).items():
        path = scratch / f"{name}.yaml"
        path.write_bytes(data)
        out = scratch / "runs"
        outcome, status, err = _run_child(["run", str(path), "--out", str(out), "--quiet"], scratch)
        kind = _classify(outcome, status, err, str(path))
        if marker.exists():
            kind = "CODE RAN"
            marker.unlink()
        results.setdefault(kind, []).append(name)
        shutil.rmtree(out, ignore_errors=True)
    return results


def _fresh(scratch: Path, name: str = "f.yaml", text: str = BASE, extra: tuple[str, ...] = ()) -> tuple[Path, Path]:
    path = scratch / name
    path.write_text(text, encoding="utf-8")
    out = scratch / "runs"
    shutil.rmtree(out, ignore_errors=True)
    outcome, status, err = _run_child(["run", str(path), "--out", str(out), "--quiet", *extra], scratch, 120)
    assert status == 0, err
    return path, out


def _resume(path: Path, out: Path, scratch: Path, *extra: str) -> tuple[str, int | None, str]:
    return _run_child(["run", str(path), "--out", str(out), "--quiet", "--resume", *extra], scratch, 120)


def _rows(out: Path) -> list[str]:
    folder = next(p for p in out.iterdir() if p.is_dir())
    lines = (folder / "history.csv").read_text().splitlines()[1:]
    return [line.split(",")[0] for line in lines]


def probe_faults(scratch: Path, parts: tuple[str, ...] = ("checkpoints", "concurrency", "folders")) -> dict[str, str]:
    import torch

    results: dict[str, str] = {}

    def record(name: str, outcome: tuple[str, int | None, str], ok_rows: bool, names: str) -> None:
        kind = _classify(*outcome, names)
        if outcome[1] == 0:
            kind = "survived" if ok_rows else "LOST ROWS"
        elif kind == "clear":
            kind = "refused (one line)"
        results[name] = kind

    damages = ("truncated", "zeroed", "bitflip", "deleted", "bare_tensor", "no_solver", "list", "wrong_shape",
               "bad_rng", "payload")
    for damage in damages if "checkpoints" in parts else ():
        path, out = _fresh(scratch)
        ckpt = out / "f" / "checkpoint.pt"
        data = ckpt.read_bytes()
        if damage == "truncated":
            ckpt.write_bytes(data[: len(data) // 3])
        elif damage == "zeroed":
            ckpt.write_bytes(bytes(len(data)))
        elif damage == "bitflip":
            flipped = bytearray(data)
            flipped[len(data) // 2] ^= 0x01
            ckpt.write_bytes(bytes(flipped))
        elif damage == "deleted":
            ckpt.unlink()
        else:
            good = torch.load(ckpt, weights_only=True)
            if damage == "bare_tensor":
                torch.save(torch.ones(2), ckpt)
            elif damage == "no_solver":
                torch.save({k: v for k, v in good.items() if k != "solver"}, ckpt)
            elif damage == "list":
                torch.save([good], ckpt)
            elif damage == "wrong_shape":
                key = next(iter(good["solver"]["model"]))
                good["solver"]["model"][key] = torch.zeros(5, 5, 5)
                torch.save(good, ckpt)
            elif damage == "bad_rng":
                good["loader_rng"] = torch.zeros(7, dtype=torch.uint8)
                torch.save(good, ckpt)
            else:
                class Payload:
                    def __reduce__(self) -> Any:
                        return (Path.touch, (scratch / MARKER,))
                torch.save({"solver": Payload()}, ckpt)
        outcome = _resume(path, out, scratch, "--epochs", "3", "--allow-change", "training.epochs") \
            if _supports_allow_change() else _resume(path, out, scratch)
        rows_ok = outcome[1] != 0 or _rows(out) == [str(i) for i in range(len(_rows(out)))]
        record(f"checkpoint {damage}", outcome, rows_ok, str(ckpt))
        if (scratch / MARKER).exists():
            results[f"checkpoint {damage}"] = "CODE RAN"
            (scratch / MARKER).unlink()

    files = (("problem.json", b"{"), ("metrics.json", b"\xff"), ("history.csv", "drop"), ("history.csv deleted", None),
             ("best.pt", b"junk"), ("checkpoints+history", "both"))
    for name, damage in files if "checkpoints" in parts else ():
        path, out = _fresh(scratch)
        folder = out / "f"
        file = folder / name.split()[0]
        if damage is None:
            file.unlink()
        elif damage == "drop":
            file.write_text("\n".join(file.read_text().splitlines()[:-1]) + "\n")
        elif damage == "both":
            (folder / "history.csv").write_text((folder / "history.csv").read_text().splitlines()[0] + "\n")
            file = folder / "history.csv"
        else:
            file.write_bytes(damage)
        outcome = _resume(path, out, scratch)
        rows = (folder / "history.csv").read_text().splitlines()[1:] if (folder / "history.csv").exists() else []
        record(f"run file {name}", outcome, len(rows) == 2, file.name)

    # concurrency: a killed run is resumed; a second resume or an overwrite starts while the first resume trains
    long = BASE.replace("n_train: 32", "n_train: 4000").replace("epochs: 2", "epochs: 3")
    path = scratch / "f.yaml"
    path.write_text(long)
    out = scratch / "runs"
    for name, extra in () if "concurrency" not in parts else (("two resumes", ("--resume",)),
                                                               ("overwrite while running", ("--overwrite",))):
        shutil.rmtree(out, ignore_errors=True)
        first = _fork_main(["run", str(path), "--out", str(out), "--quiet"])
        _wait_for(out / "f" / "checkpoint.pt")
        os.kill(first, signal.SIGKILL)  # an interrupted run, resumable
        os.waitpid(first, 0)
        resumed = _fork_main(["run", str(path), "--out", str(out), "--quiet", "--resume"])
        time.sleep(3.0)  # the resumed run is training
        second = _run_child(["run", str(path), "--out", str(out), "--quiet", *extra], scratch, 120)
        _, code = os.waitpid(resumed, 0)
        rows = _rows(out)
        first_ok = os.waitstatus_to_exitcode(code) == 0
        intact = first_ok and rows == [str(i) for i in range(3)]
        kind = _classify(*second, str(out / "f"))
        results[f"concurrency {name}"] = ("refused (one line), first run intact" if kind == "clear" and intact
                                          else f"second: {kind} (status {second[1]}), first ok {first_ok}, "
                                               f"rows {rows}")

    if "folders" not in parts:
        return results
    # folders
    blocker = scratch / "blocker"
    blocker.write_text("x")
    path = scratch / "g.yaml"
    path.write_text(BASE)
    record("out under a file", _run_child(["run", str(path), "--out", str(blocker / "runs"), "--quiet"], scratch),
           True, str(blocker))
    elsewhere = scratch / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    (scratch / "runs").mkdir(exist_ok=True)
    link = scratch / "runs" / "g"
    if link.exists() or link.is_symlink():
        shutil.rmtree(link) if link.is_dir() and not link.is_symlink() else link.unlink()
    link.symlink_to(elsewhere)
    outcome = _run_child(["run", str(path), "--out", str(scratch / "runs"), "--quiet"], scratch)
    written = len(list(elsewhere.iterdir()))
    kind = _classify(*outcome, str(link))
    results["run folder linked elsewhere"] = ("refused (one line)" if kind == "clear" and not written
                                              else f"{kind}, wrote {written} files outside --out")
    link.unlink()

    # odd names: run, then --overwrite; nothing outside --out may change
    for odd in ("...yaml", "..yml", "sp ace.yaml", "ünï.yaml", ".hidden.yaml"):
        box = scratch / "box"
        shutil.rmtree(box, ignore_errors=True)
        (box / "problems").mkdir(parents=True)
        (box / "keep.txt").write_text("keep")
        path = box / "problems" / odd
        path.write_text(BASE.replace("epochs: 2", "epochs: 1"))
        before = _snapshot(box, box / "out")
        first = _run_child(["run", str(path), "--out", str(box / "out"), "--quiet"], box, 120)
        second = _run_child(["run", str(path), "--out", str(box / "out"), "--quiet", "--overwrite"], box, 120)
        after = _snapshot(box, box / "out")
        outside = (box / "keep.txt").exists() and before == after
        results[f"name {odd!r}"] = ("ok, nothing outside --out" if outside and first[1] == 0 and second[1] == 0
                                    else f"status {first[1]}/{second[1]}, outside --out untouched: {outside}")

    # all batches non-finite with on_nonfinite: skip
    nan = BASE.replace("lr: 0.01}", "lr: 1.0e+30}").replace("batch_size: 16}", "batch_size: 16, "
                                                              "on_nonfinite: skip}")
    path = scratch / "n.yaml"
    path.write_text(nan)
    shutil.rmtree(scratch / "runs", ignore_errors=True)
    outcome = _run_child(["run", str(path), "--out", str(scratch / "runs"), "--quiet"], scratch, 120)
    results["every batch non-finite, skip"] = ("accepted (NaN run reported as a success)" if outcome[1] == 0 else
                                               _classify(*outcome, str(path)))
    return results


def _fork_main(argv: list[str]) -> int:
    pid = os.fork()
    if pid == 0:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            from constrained_eq.run.cli import main

            os._exit(main(argv))
    return pid


def _wait_for(path: Path, timeout: float = 120.0) -> None:
    began = time.monotonic()
    while not path.exists() and time.monotonic() - began < timeout:
        time.sleep(0.05)


def _supports_allow_change() -> bool:
    from constrained_eq.run import cli

    return "allow_change" in Path(cli.__file__).read_text()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["files", "faults", "concurrency"], default=None)
    args = parser.parse_args()
    import constrained_eq

    print(f"checkout: {Path(constrained_eq.__file__).parent.parent}")
    with tempfile.TemporaryDirectory(prefix="ceq_probe_") as tmp:
        scratch = Path(tmp)
        os.environ.setdefault("CEQ_CACHE", str(scratch / "cache"))
        if args.only in (None, "files"):
            results = probe_files(scratch)
            print(f"problem files: {sum(len(v) for v in results.values())} probes")
            for kind, names in sorted(results.items()):
                print(f"  {kind}: {len(names)}  {', '.join(names) if kind != 'clear' else ''}")
        if args.only in (None, "faults", "concurrency"):
            parts = ("concurrency",) if args.only == "concurrency" else ("checkpoints", "concurrency", "folders")
            for name, kind in probe_faults(scratch, parts).items():
                print(f"  {name}: {kind}")


if __name__ == "__main__":
    main()
