"""Plant small bugs in the core modules, one at a time, and check that the tests catch each one.

Each mutant is a text substitution ``(file, old, new)`` applied to a temporary copy of the repository
(the working tree is never touched); the tests listed for it are run against the copy, stopping at
the first failure. A mutant is *killed* when a test fails, *survived* when they all pass, and
*stale* when its ``old`` text is no longer in the file (the code moved on: update the list).

Usage::

    OMP_NUM_THREADS=1 python tools/mutants.py            # every mutant (about 30 minutes on one core)
    OMP_NUM_THREADS=1 python tools/mutants.py -j 4       # four mutants at a time, each in its own copy
    python tools/mutants.py --list                        # names, files and tests, without running
    python tools/mutants.py -k haar -k nbody              # mutants whose name contains a pattern

Not part of the test suite (too slow); run it before closing an issue that touches these modules.
docs/testing.md reports the last result and what each survivor means.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENGINE_TESTS = ("tests/core/solver/test_engine.py", "tests/core/formulations", "tests/core/problem/test_constraints.py")
SYMMETRY_TESTS = ("tests/symmetry", "tests/homotopy/test_lie_penalty.py",)
NBODY_TESTS = ("tests/data/test_nbody.py", "tests/data/test_nbody_protocol.py")
SEGNN_TESTS = ("tests/models/test_segnn.py",)
CERTIFICATE_TESTS = ("tests/training/test_certificate.py",)


@dataclass(frozen=True)
class Mutant:
    """One planted bug: replace ``old`` (which must occur exactly once) by ``new`` in ``file``."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


M = Mutant
MUTANTS: list[Mutant] = [
    # --- the four mutants of issue 19, which survived the whole suite before it ---------------------
    M("metrics: equivariance error x0.5", "constrained_eq/symmetry/metrics.py",
      "return diff.reshape(n, x.shape[0], -1).norm(dim=-1)",
      "return 0.5 * diff.reshape(n, x.shape[0], -1).norm(dim=-1)", SYMMETRY_TESTS),
    M("tasks: rotation error x0.5", "constrained_eq/tasks/base.py",
      "return float(num) / max(float(den), 1e-12)", "return 0.5 * float(num) / max(float(den), 1e-12)",
      ("tests/tasks/test_task_rotation_errors.py",)),
    M("haar: random_rotation returns the identity", "constrained_eq/symmetry/haar.py",
      "    return rotation.to(device=device)\n",
      "    return torch.eye(3, dtype=rotation.dtype).expand(rotation.shape).clone()\n",
      ("tests/symmetry/test_haar.py", "tests/tasks/test_task_rotation_errors.py")),
    M("nbody: frames 31 -> 41 instead of 30 -> 40", "constrained_eq/data/nbody.py",
      "steps = (100 * (frame_in + 1), 100 * (frame_out + 1))", "steps = (100 * (frame_in + 2), 100 * (frame_out + 2))",
      NBODY_TESTS),
    # --- mutants the suite already caught in issue 19, kept as a regression of the tests -----------
    M("resilient: rho*|u|^2 instead of rho/2*|u|^2", "constrained_eq/core/solver/cooper_bridge.py",
      "loss = loss + 0.5 * plan.rho * self.slacks[plan.key].pow(2).sum()",
      "loss = loss + plan.rho * self.slacks[plan.key].pow(2).sum()", ENGINE_TESTS),
    M("homotopy: project keeps the relaxed layer", "constrained_eq/homotopy/relax.py",
      "        return _strip(module.eq, inplace)", "        return module", ("tests/homotopy/test_homotopy.py",)),
    M("groups: SO(3) samples are the identity", "constrained_eq/symmetry/groups.py",
      "            return random_rotation(generator, dtype, device, batch=n)",
      "            return torch.eye(3, dtype=dtype, device=device).expand(n, 3, 3).clone()", SYMMETRY_TESTS),
    # --- engine, formulations, constraints --------------------------------------------------------
    M("engine: slacks not projected on u >= 0", "constrained_eq/core/solver/engine.py",
      "slack.clamp_(min=0.0)", "slack.clamp_(min=-1e30)", ENGINE_TESTS),
    M("engine: dual step every other step", "constrained_eq/core/solver/engine.py",
      "self.cmp.dual_update = self.step_count % self.dual_every == 0",
      "self.cmp.dual_update = self.step_count % (2 * self.dual_every) == 0", ENGINE_TESTS),
    M("engine: schedule sets gamma to 1", "constrained_eq/core/formulations/schedule.py",
      "            variable.fill_(value)", "            variable.fill_(1.0)", ENGINE_TESTS),
    M("optim: dual learning rate halved", "constrained_eq/core/solver/optimizers.py",
      "optimizer = cls(params, lr=dual_lr, maximize=True)",
      "optimizer = cls(params, lr=0.5 * dual_lr, maximize=True)", ENGINE_TESTS),
    M("optim: variable (gamma, u) learning rate halved", "constrained_eq/core/solver/optimizers.py",
      "return cls(params, lr=float(lr))", "return cls(params, lr=0.5 * float(lr))", ENGINE_TESTS),
    M("cmp: penalty weight ignored", "constrained_eq/core/solver/cooper_bridge.py",
      'loss = loss + getattr(plan.constraint, "every", 1) * plan.weight * result.values[plan.key].sum()',
      'loss = loss + getattr(plan.constraint, "every", 1) * result.values[plan.key].sum()',
      ENGINE_TESTS + ("tests/core/solver/test_engine_lie.py",)),
    M("plan: slack added instead of subtracted", "constrained_eq/core/formulations/base.py",
      "return violation - slack if slack is not None else violation",
      "return violation + slack if slack is not None else violation", ENGINE_TESTS),
    M("plan: resilient equality without |h|", "constrained_eq/core/formulations/base.py",
      "_abs if constraint.value == 0.0 else", "_identity if constraint.value == 0.0 else",
      ENGINE_TESTS),
    M("constraints: g + b instead of g - b", "constrained_eq/core/problem/constraints.py",
      "parts.append(values - self._rhs(self.bound,", "parts.append(values + self._rhs(self.bound,", ENGINE_TESTS),
    M("augmented: penalty coefficient doubled", "constrained_eq/core/formulations/augmented.py",
      "torch.full((num_constraints,), self.penalty_coefficient,",
      "torch.full((num_constraints,), 2 * self.penalty_coefficient,", ENGINE_TESTS),
    M("penalty: coefficient doubled", "constrained_eq/core/formulations/penalty.py",
      "torch.full((num_constraints,), self.coefficient,", "torch.full((num_constraints,), 2 * self.coefficient,",
      ENGINE_TESTS),
    M("schedule: triangle peaks at 1/2", "constrained_eq/core/formulations/schedule.py",
      "        return 2.0 * epoch / epochs", "        return epoch / epochs", ENGINE_TESTS),
    # --- homotopy ---------------------------------------------------------------------------------
    M("homotopy: f_eq + |gamma| f_neq", "constrained_eq/homotopy/layers.py",
      "        return eq_out + gamma * neq_out", "        return eq_out + gamma.abs() * neq_out",
      ("tests/homotopy/test_homotopy.py", "tests/symmetry/test_pinned_values.py")),
    # --- symmetry metrics, Lie derivative, bounds ---------------------------------------------------
    M("metrics: squared norm per sample", "constrained_eq/symmetry/metrics.py",
      "return diff.reshape(n, x.shape[0], -1).norm(dim=-1)", "return diff.reshape(n, x.shape[0], -1).pow(2).sum(-1)",
      SYMMETRY_TESTS),
    M("metrics: projection error x0.5", "constrained_eq/homotopy/metrics.py",
      "return sample_norms(relaxed - strict).mean()", "return 0.5 * sample_norms(relaxed - strict).mean()",
      SYMMETRY_TESTS),
    M("metrics: tuple projection error keeps the first part", "constrained_eq/homotopy/metrics.py",
      "return sample_norms([a - b for a, b in zip(relaxed, strict, strict=True)]).mean()",
      "return sample_norms(relaxed[0] - strict[0]).mean()", SYMMETRY_TESTS),
    M("lie: + d rho_out f instead of -", "constrained_eq/symmetry/lie_derivative.py",
      "return tangent - _apply(generator_out, out)", "return tangent + _apply(generator_out, out)", SYMMETRY_TESTS),
    M("lie: analytic commutator with the wrong sign", "constrained_eq/symmetry/lie_derivative.py",
      "return weight @ algebra_in - algebra_out @ weight", "return algebra_out @ weight - weight @ algebra_in",
      SYMMETRY_TESTS),
    M("lie penalty: branch norm dropped from the regulariser", "constrained_eq/homotopy/lie_penalty.py",
      'return _terms(model, "lie_regularizer", lie=True, norm=True)',
      'return _terms(model, "lie_regularizer", lie=True, norm=False)', SYMMETRY_TESTS),
    M("lie penalty: default weight 0.1", "constrained_eq/homotopy/lie_penalty.py",
      "Penalty(target, weight=0.01 if weight is None", "Penalty(target, weight=0.1 if weight is None",
      SYMMETRY_TESTS),
    M("bounds: Thm 4.1 with M^L", "constrained_eq/symmetry/bounds.py",
      "return factor * B * M ** (L - 1) * x_norm", "return factor * B * M**L * x_norm", SYMMETRY_TESTS),
    M("bounds: Thm 4.2 always the printed C", "constrained_eq/symmetry/bounds.py",
      "C = max(B, 1.0) if verbatim else max(B, M)", "C = max(B, 1.0)", SYMMETRY_TESTS),
    M("bounds: Thm A.2 one layer without the factor 2", "constrained_eq/symmetry/bounds.py",
      "            return 2 * g[0] * B**2 * x_norm", "            return g[0] * B**2 * x_norm", SYMMETRY_TESTS),
    M("bounds: chain (13) with M + |gamma|", "constrained_eq/symmetry/bounds.py",
      "    factors = M + g * B", "    factors = M + g", SYMMETRY_TESTS),
    # --- rotation samplers --------------------------------------------------------------------------
    M("haar: the generator is never advanced", "constrained_eq/symmetry/haar.py",
      "        generator.set_state(default.get_state())\n", "",
      ("tests/symmetry/test_haar.py", "tests/data/test_modelnet.py")),
    M("haar: draws from the global RNG despite a generator", "constrained_eq/symmetry/haar.py",
      "        default.set_state(generator.get_state())\n", "", SYMMETRY_TESTS),
    M("groups: O(3) never reflects", "constrained_eq/symmetry/groups.py",
      "signs = torch.randint(0, 2, (n,), generator=generator, device=device).to(dtype) * 2 - 1",
      "signs = torch.randint(0, 2, (n,), generator=generator, device=device).to(dtype) * 0 + 1", SYMMETRY_TESTS),
    M("tasks: rotation error seeded 1", "constrained_eq/tasks/base.py",
      "generator = torch.Generator().manual_seed(0)", "generator = torch.Generator().manual_seed(1)",
      ("tests/tasks/test_task_rotation_errors.py",)),
    M("tasks: nbody augmentation leaves the target unrotated", "constrained_eq/tasks/nbody.py",
      "target=batch.target @ rotation.T)", "target=batch.target)", ("tests/symmetry/test_haar.py",)),
    # --- data simulators -------------------------------------------------------------------------------
    M("nbody: like charges attract", "constrained_eq/data/nbody.py",
      "coupling = charges[:, :, None] * charges[:, None, :] / (r2 * np.sqrt(r2))",
      "coupling = -charges[:, :, None] * charges[:, None, :] / (r2 * np.sqrt(r2))", NBODY_TESTS),
    M("nbody: force clip 10x higher", "constrained_eq/data/nbody.py",
      "max_f = 0.1 / dt if max_force is None else float(max_force)",
      "max_f = 1.0 / dt if max_force is None else float(max_force)", NBODY_TESTS),
    M("nbody: no initial half kick", "constrained_eq/data/nbody.py",
      "    v += dt * charged_forces(x, q, clip=clip, max_force=max_f, field=field)\n    for s",
      "    for s", NBODY_TESTS),
    M("nbody: initial speed 1 instead of 0.5", "constrained_eq/data/nbody.py",
      "v[i] = (v0 * 0.5 / np.sqrt(", "v[i] = (v0 * 1.0 / np.sqrt(", NBODY_TESTS),
    M("nbody: dataset default frame_in 31", "constrained_eq/data/nbody.py",
      "        frame_in: int = 30,\n        frame_out: int = 40,\n        dtype",
      "        frame_in: int = 31,\n        frame_out: int = 41,\n        dtype", NBODY_TESTS),
    M("nbody: field pushes against the charge", "constrained_eq/data/nbody.py",
      "force += charges[:, :, None] * efield", "force -= charges[:, :, None] * efield", NBODY_TESTS),
    # --- second round: subtler bugs in the same modules ------------------------------------------------
    M("engine: checkpoint does not restore the RNG", "constrained_eq/core/solver/state.py",
      '    set_rng_state(state["rng"])', "    pass", ("tests/core/solver/test_checkpoint.py",)),
    M("cmp: logged values alias the parameters", "constrained_eq/core/solver/cooper_bridge.py",
      "return detached.clone() if tensor.is_leaf or tensor._is_view() else detached", "return detached",
      ENGINE_TESTS),
    M("plan: equality handled as an inequality", "constrained_eq/core/formulations/base.py",
      '"lagrangian", ConstraintType.EQUALITY,\n', '"lagrangian", ConstraintType.INEQUALITY,\n',
      ENGINE_TESTS),
    M("resilient: default rho 2", "constrained_eq/core/formulations/resilient.py",
      "def __init__(self, rho: float = 1.0) -> None:", "def __init__(self, rho: float = 2.0) -> None:", ENGINE_TESTS),
    M("metrics: group samples ignore the generator", "constrained_eq/symmetry/metrics.py",
      "g = group.sample(n, generator=generator, dtype=x.dtype, device=x.device)",
      "g = group.sample(n, generator=None, dtype=x.dtype, device=x.device)", SYMMETRY_TESTS),
    M("metrics: act_out ignored", "constrained_eq/symmetry/metrics.py",
      'rho_out = resolve_action(act_in if act_out is None else act_out, "act_out")',
      'rho_out = resolve_action(act_in, "act_out")', SYMMETRY_TESTS),
    M("lie: generator applied transposed", "constrained_eq/symmetry/lie_derivative.py",
      "        return x @ a.T\n", "        return x @ a\n", SYMMETRY_TESTS),
    M("bounds: Thm A.1 without the 1/k", "constrained_eq/symmetry/bounds.py",
      "base = 1 + prefix / k.clamp(min=1)", "base = 1 + prefix", SYMMETRY_TESTS),
    M("bounds: signed gamma", "constrained_eq/symmetry/bounds.py", "    return g.abs()", "    return g",
      ("tests/symmetry/test_pinned_values.py", "tests/symmetry/test_bounds.py")),
    M("bounds: chain (8) powers of M reversed", "constrained_eq/symmetry/bounds.py",
      "powers = M ** torch.arange(L - 1, -1, -1, dtype=g.dtype)", "powers = M ** torch.arange(L, dtype=g.dtype)",
      SYMMETRY_TESTS),
    M("reps: VectorRep acts by Q transposed", "constrained_eq/symmetry/reps.py",
      "return _kron(torch.eye(self.channels, dtype=q.dtype, device=q.device), q)",
      "return _kron(torch.eye(self.channels, dtype=q.dtype, device=q.device), q.transpose(-1, -2))",
      SYMMETRY_TESTS),
    M("tasks: invariance error with squares", "constrained_eq/tasks/base.py",
      "return (turned - out).abs().sum(), out.abs().sum()", "return (turned - out).pow(2).sum(), out.pow(2).sum()",
      ("tests/tasks/test_task_rotation_errors.py",)),
    M("tasks: nbody error relative to |f(x)| instead of |f(x) - x|", "constrained_eq/tasks/nbody.py",
      "(out - batch.loc).norm(dim=-1).sum()),", "out.norm(dim=-1).sum()),",
      ("tests/tasks/test_task_rotation_errors.py",)),
    M("tasks: mocap error reads the first predicted step", "constrained_eq/tasks/mocap.py",
      "((turned[-1] - out[-1] @ rot.T)", "((turned[0] - out[0] @ rot.T)",
      ("tests/tasks/test_task_rotation_errors.py",)),
    M("nbody: val pool of 1,000", "constrained_eq/data/nbody.py",
      '"val": 2_000, "test": 2_000}', '"val": 1_000, "test": 2_000}', NBODY_TESTS),
    M("nbody: target is the input frame", "constrained_eq/data/nbody.py",
      'f"{split}_target": xs[1]}', 'f"{split}_target": xs[0]}', NBODY_TESTS),
    # --- SEGNN's reference initialisation and encoding (issue 27) -----------------------------------
    M("segnn: weight scaling divides the output", "constrained_eq/models/steerable.py",
      "out = out * self.root_fan_in", "out = out / self.root_fan_in", SEGNN_TESTS),
    M("segnn: uniform weights on (-1/2, 1/2)", "constrained_eq/models/steerable.py",
      "self.tp.weight.uniform_(-1.0, 1.0)", "self.tp.weight.uniform_(-0.5, 0.5)", SEGNN_TESTS),
    M("segnn: stored weights divided by fan_in", "constrained_eq/models/steerable.py",
      "weight.div_(self.root_fan_in[starts[ins.i_out]])", "weight.div_(self.root_fan_in[starts[ins.i_out]] ** 2)",
      SEGNN_TESTS),
    M("segnn: fan-in counts the first input only", "constrained_eq/models/steerable.py",
      "fan_in[ins.i_out] += tp.irreps_in1[ins.i_in1].mul * tp.irreps_in2[ins.i_in2].mul",
      "fan_in[ins.i_out] += tp.irreps_in1[ins.i_in1].mul", SEGNN_TESTS),
    M("segnn: uniform bias bound 1/fan_in", "constrained_eq/models/steerable.py",
      "bound = 1.0 / self.root_fan_in[self.bias_index]", "bound = 1.0 / self.root_fan_in[self.bias_index] ** 2",
      SEGNN_TESTS),
    M("segnn: x_j - x_i is x_i - x_j", "constrained_eq/models/segnn.py",
      'rel = loc[row] - loc[col] if edge_vector == "x_i-x_j" else loc[col] - loc[row]',
      "rel = loc[row] - loc[col]", SEGNN_TESTS),
    M("segnn: distance norm is the square", "constrained_eq/models/segnn.py",
      'dist2 if distance == "squared" else dist2.sqrt()', "dist2", SEGNN_TESTS),
    M("segnn: attr_scalar ignored", "constrained_eq/models/segnn.py",
      "    if attr_scalar is not None:\n", "    if False:\n", SEGNN_TESTS),
    # --- the certificate of the deployed model and the recent-steps verdicts (issue 28) --------------
    M("certificate: an inequality's violation not clamped", "constrained_eq/training/certificate.py",
      "violation = raw.abs() if equality else raw.clamp(min=0.0)", "violation = raw.abs()", CERTIFICATE_TESTS),
    M("certificate: margins of an inequality with the wrong sign", "constrained_eq/training/certificate.py",
      "margins=(-raw.abs() if equality else -raw).tolist(),", "margins=(-raw.abs() if equality else raw).tolist(),",
      CERTIFICATE_TESTS),
    M("certificate: an entry holds strictly below the tolerance", "constrained_eq/training/certificate.py",
      "holds=bool((violation <= tolerance).all()))", "holds=bool((violation < 0.1 * tolerance).all()))",
      CERTIFICATE_TESTS),
    M("certificate: the power-iteration estimate instead of the exact norm", "constrained_eq/training/certificate.py",
      "exact = target.exact is not None", "exact = False", CERTIFICATE_TESTS),
    M("feasibility: feasible needs no hold at the last step", "constrained_eq/core/solver/feasibility.py",
      'held = ~often & (recent["last"] <= tol)', "held = ~often", ("tests/core/solver/test_feasibility.py",)),
    M("feasibility: crossings not needed to oscillate", "constrained_eq/core/solver/feasibility.py",
      'oscillating = often & (recent["flips"] >= self.min_crossings)', "oscillating = often",
      ("tests/core/solver/test_feasibility.py",)),
    # --- modules split out or hardened in the same change ----------------------------------------------
    M("yaml: 010 read as octal", "constrained_eq/run/problem_yaml.py",
      "return int(text, 10)", "return int(text, 8 if text.startswith('0') and len(text) > 1 else 10)",
      ("tests/run/security/test_sec_yaml12.py",)),
    M("atomic_io: refuse_link never refuses", "constrained_eq/_utils/atomic_io.py",
      "    if path.is_symlink():\n        raise _refused(path)", "    if False:\n        raise _refused(path)",
      ("tests/run/security/test_sec_links.py",)),
    M("checkpointing: another problem's checkpoint accepted", "constrained_eq/training/checkpointing.py",
      "if recorded is None or current is None or recorded in accepted:", "if True:",
      ("tests/run/security/test_sec_provenance.py",)),
    M("keywords: no close matches", "constrained_eq/core/solver/keywords.py",
      "close = difflib.get_close_matches(unknown[0], [*solver, *taken], n=3)", "close = []",
      ("tests/core/solver/test_engine.py",)),
    M("summary: a finished run's verdicts replaced on resume", "constrained_eq/training/summary.py",
      'kept = summary.get("feasibility") if not trained and summary.get("feasibility") else None', "kept = None",
      ("tests/run/security/test_sec_finished.py",)),
    # --- start-up, the one reader, sweeps that lose nothing ------------------------------------------
    M("haar: e3nn imported with the module", "constrained_eq/symmetry/haar.py",
      "import torch\n\n__all__", "import torch\nfrom e3nn import o3  # noqa: F401\n\n__all__",
      ("tests/test_startup.py",)),
    M("lazy: the registering modules not imported", "constrained_eq/_utils/lazy.py",
      "        for registering in first_use:\n", "        for registering in ():\n", ("tests/test_startup.py",)),
    M("lazy: a name resolves to its module", "constrained_eq/_utils/lazy.py",
      'value = module if home[name] == f"{package}.{name}" else getattr(module, name)', "value = module",
      ("tests/test_startup.py",)),
    M("cli: the file parsed after torch", "constrained_eq/run/cli.py",
      "    read_yaml(Path(file))  # a missing",
      "    import torch  # noqa: F401\n    read_yaml(Path(file))  # a missing", ("tests/test_startup.py",)),
    M("console: atexit handlers skipped", "constrained_eq/run/console.py",
      "    atexit._run_exitfuncs()", "    pass", ("tests/test_startup.py",)),
    M("console: leaves while another thread runs", "constrained_eq/run/console.py",
      "    if any(t is not threading.main_thread()", "    if False and any(t is not threading.main_thread()",
      ("tests/test_startup.py",)),
    M("nbody: joined batch's second edges not shifted", "constrained_eq/data/nbody.py",
      "torch.cat([first.edge_index, second.edge_index + nodes], dim=1)",
      "torch.cat([first.edge_index, second.edge_index], dim=1)", ("tests/tasks/test_task_rotation_errors.py",)),
    M("tasks: stacked forward split the wrong way round", "constrained_eq/tasks/base.py",
      "                out, turned_out = split(self.forward(model, both))",
      "                turned_out, out = split(self.forward(model, both))",
      ("tests/tasks/test_task_rotation_errors.py",)),
    M("yaml: texts without the size limit", "constrained_eq/run/problem_yaml.py",
      "    if len(text) > MAX_BYTES:", "    if False:", ("tests/run/security/test_sec_one_reader.py",)),
    M("atomic_io: a FIFO read", "constrained_eq/_utils/atomic_io.py",
      "    if not stat.S_ISREG(mode):", "    if stat.S_ISDIR(mode):", ("tests/run/security/test_sec_one_reader.py",)),
    M("sweep: stale trials never re-queued", "constrained_eq/run/sweep.py",
      "             if not _worker_alive(str(t.user_attrs.get(\"worker\", \"\")))]",
      "             if False]", ("tests/run/security/test_sec_sweep_resume.py",)),
    M("sweep: a dead worker taken for alive", "constrained_eq/run/sweep.py",
      "    except ProcessLookupError:\n        return False", "    except ProcessLookupError:\n        return True",
      ("tests/run/security/test_sec_sweep_resume.py",)),
    M("sweep: Ctrl-C leaves the trial running", "constrained_eq/run/sweep.py",
      "the next run of the sweep runs its point again\n            study.tell(trial, state=states.FAIL)\n",
      "the next run of the sweep runs its point again\n",
      ("tests/run/security/test_sec_sweep_resume.py",)),
    M("sweep: missing trials not reported", "constrained_eq/run/sweep.py",
      "    if len(done) < total:", "    if False:", ("tests/run/security/test_sec_sweep_resume.py",)),
    # --- the Lightning and Accelerate integrations ----------------------------------------------------
    M("lightning: the Solver's model never DDP-wrapped", "constrained_eq/integrations/lightning.py",
      "if isinstance(strategy, DDPStrategy) and is_distributed():", "if False:",
      ("tests/integrations/test_lightning_ddp.py",)),
    M("lightning: the checkpoint's Solver state ignored", "constrained_eq/integrations/lightning.py",
      "            self._pending_state = checkpoint[CHECKPOINT_KEY]", "            self._pending_state = None",
      ("tests/integrations/test_lightning.py",)),
    M("lightning: the Solver stepped outside Lightning's optimizer", "constrained_eq/integrations/lightning.py",
      "record = self.optimizers().step(closure=partial(self.solver.step, batch))", "record = self.solver.step(batch)",
      ("tests/integrations/test_lightning.py",)),
    M("integrations: validation sums not added over ranks", "constrained_eq/integrations/_common.py",
      "        dist.all_reduce(flat, op=dist.ReduceOp.SUM)\n", "", ("tests/integrations/test_lightning_ddp.py",)),
    M("integrations: validation batches not weighted by size", "constrained_eq/integrations/_common.py",
      "else target(model, batch, output).reshape(-1) * n)", "else target(model, batch, output).reshape(-1))",
      ("tests/integrations/test_lightning.py",)),
    M("integrations: λ logged as the constraint values", "constrained_eq/integrations/_common.py",
      '("lambda", record.multipliers)', '("lambda", record.values)', ("tests/integrations/test_lightning.py",)),
    M("accelerate: the Solver keeps the unprepared model", "constrained_eq/integrations/accelerate.py",
      "    solver.model = prepared[0]", "    solver.model = model", ("tests/integrations/test_accelerate_ddp.py",)),
    M("accelerate: rank 0's RNG saved for every rank", "constrained_eq/integrations/accelerate.py",
      "solver_checkpoint(self.solver, keep_rng=False)", "solver_checkpoint(self.solver, keep_rng=True)",
      ("tests/integrations/test_accelerate.py",)),
    M("plots: log axes not in plain text", "constrained_eq/run/plots.py",
      "    ax.yaxis.set_major_formatter(PlainLogFormatter())\n", "", ("tests/run/test_reports.py",)),
    # --- round two of issue 33: selection, averaging, schedules, clipping, bf16, updaters, nuPI, right-hand
    # sides, plain and compiled steps, the Lie penalty's forms, checkpoints, the run lock, overrides, sweeps,
    # TensorBoard, import paths and the constraint parser ---------------------------------------------------
    M("selection: every candidate taken as feasible", "constrained_eq/training/selection.py",
      "    if select != FEASIBLE or measured is None or measured.feasible:",
      "    if select != FEASIBLE or measured is None:", ("tests/training/test_split_feasibility.py",)),
    M("selection: the averaged model ranked by the iterate's column", "constrained_eq/training/selection.py",
      '    if prefix == "val" or not column.startswith("val_"):', "    if True:",
      ("tests/training/test_split_feasibility.py",)),
    M("averaging: EMA with decay 1 - d", "constrained_eq/training/validation.py",
      'get_ema_multi_avg_fn(decay) if averaging == "ema"', 'get_ema_multi_avg_fn(1 - decay) if averaging == "ema"',
      ("tests/training/test_split_feasibility.py",)),
    M("averaging: starts one epoch after average_start", "constrained_eq/training/loop.py",
      "if self.averaged is not None and epoch >= self.o.averaging.start:",
      "if self.averaged is not None and epoch > self.o.averaging.start:",
      ("tests/training/test_split_feasibility.py",)),
    M("schedules: a rate held in a tensor keeps its base", "constrained_eq/training/schedules.py",
      'group["lr"].fill_(base * self.factor(epoch))', 'group["lr"].fill_(base)', ("tests/training/test_schedules.py",)),
    M("schedules: a negative factor accepted", "constrained_eq/training/schedules.py",
      "                or factor < 0:", "                or False:", ("tests/training/test_schedules.py",)),
    M("clipping: hooked on the last optimizer of theta", "constrained_eq/training/clipping.py",
      "self.optimizers[0].register_step_pre_hook(self)", "self.optimizers[-1].register_step_pre_hook(self)",
      ("tests/training/test_schedules.py",)),
    M("bf16: autocast in float16", "constrained_eq/training/precision.py",
      "with torch.autocast(device_type, dtype=torch.bfloat16):",
      "with torch.autocast(device_type, dtype=torch.float16):", ("tests/training/test_schedules.py",)),
    M("updaters: the multiplicative rule never restarts", "constrained_eq/core/formulations/updaters.py",
      "            has_restart=self.has_restart)", "            has_restart=False)",
      ("tests/core/formulations/test_updaters.py",)),
    M("updaters: the additive rule ignores the tolerance", "constrained_eq/core/formulations/updaters.py",
      "increment=self.increment, violation_tolerance=self.violation_tolerance, has_restart",
      "increment=self.increment, has_restart", ("tests/core/formulations/test_updaters.py",)),
    M("nupi: critical gain without the factor 2", "constrained_eq/core/solver/dual_optimizers.py",
      "return 2.0 * math.sqrt(self.kappa_i / (eta * lr))", "return math.sqrt(self.kappa_i / (eta * lr))",
      ("tests/core/formulations/test_nupi.py",)),
    M("nupi: the primal rate preferred to gamma's plain-SGD rate", "constrained_eq/core/solver/dual_optimizers.py",
      "eta = eta_p if eta_p is not None else primal_lr", "eta = primal_lr if primal_lr is not None else eta_p",
      ("tests/core/formulations/test_nupi.py",)),
    M("rhs: lower = bound refused", "constrained_eq/core/problem/constraints.py",
      "            if a > b:", "            if a >= b:",
      ("tests/core/problem/test_constraints.py", "tests/core/formulations/test_right_hand_sides.py")),
    M("rhs: per-entry sides built in float32", "constrained_eq/core/problem/rhs.py",
      "return torch.tensor(rhs, dtype=like.dtype, device=like.device)", "return torch.tensor(rhs, device=like.device)",
      ("tests/core/problem/test_constraints.py", "tests/core/formulations/test_right_hand_sides.py")),
    M("plain steps: weight decay ignored", "constrained_eq/core/solver/plain_steps.py",
      'g["momentum"] == 0 and g["weight_decay"] == 0 and', 'g["momentum"] == 0 and',
      ("tests/core/solver/test_plain_steps.py",)),
    M("compiled: inequality multipliers not projected", "constrained_eq/core/solver/compiled.py",
      "                    multiplier.post_step_()", "                    pass",
      ("tests/core/solver/test_compile.py",)),
    M("compiled: no dual step", "constrained_eq/core/solver/compiled.py",
      "        for step in self._dual_steps:\n            step()\n", "", ("tests/core/solver/test_compile.py",)),
    M("lie penalty: low-rank U_A without the minus", "constrained_eq/homotopy/lie_penalty.py",
      "-q.index_select(2, cols))", "q.index_select(2, cols))", ("tests/homotopy/test_lie_penalty.py",)),
    M("lie penalty: branches with other row counts stacked together", "constrained_eq/homotopy/lie_penalty.py",
      "key = (branch.in_features, branch.out_features, x.shape[0], branch.weight.dtype",
      "key = (branch.in_features, branch.out_features, branch.weight.dtype", ("tests/homotopy/test_lie_penalty.py",)),
    # survives while _verified reads the previous checkpoint's checksums from 'checkpoint.prevs.json' (never
    # written): see the xfail test_sec_runs.py::test_a_previous_checkpoint_whose_checksum_is_not_listed_is_refused
    M("checkpointing: the manifest keeps one checksum", "constrained_eq/training/checkpointing.py",
      "[*known, _sha256(data)][-3:]", "[*known, _sha256(data)][-1:]", ("tests/run/security/test_sec_runs.py",)),
    M("checkpointing: checksums not verified", "constrained_eq/training/checkpointing.py",
      "if known is not None and _sha256(path.read_bytes()) not in known:", "if False:",
      ("tests/run/security/test_sec_runs.py",)),
    M("checkpointing: the previous checkpoint tried first", "constrained_eq/training/checkpointing.py",
      "for candidate in (path, _previous(path)):", "for candidate in (_previous(path), path):",
      ("tests/run/security/test_sec_runs.py",)),
    M("run lock: not re-entrant", "constrained_eq/training/run_folder.py",
      "        if key in RunLock._held:  # this process", "        if False:  # this process",
      ("tests/run/security/test_sec_runs.py",)),
    M("run lock: the last holder's pid not truncated", "constrained_eq/training/run_folder.py",
      "            os.ftruncate(fd, 0)\n", "", ("tests/run/security/test_sec_run_lock.py",)),
    M("overrides: a shorthand section loses its name", "constrained_eq/run/overrides.py",
      '                    child["name"] = named\n', "", ("tests/run/test_overrides.py",)),
    M("overrides: any key accepted", "constrained_eq/run/overrides.py",
      "if not sep or not _KEY.match(key):", "if not sep:", ("tests/run/test_overrides.py",)),
    M("sweep: an accuracy minimised", "constrained_eq/run/sweep.py",
      'return "maximize" if select.removeprefix("val_") in task.higher_is_better else "minimize"',
      'return "minimize"', ("tests/run/test_sweep_settings.py",)),
    M("sweep: a given storage ignored", "constrained_eq/run/sweep_file.py",
      'return self.storage or f"sqlite:///', 'return f"sqlite:///', ("tests/run/test_sweep_settings.py",)),
    M("sweep: loguniform drawn uniformly", "constrained_eq/run/sweep_file.py",
      'log=self.kind == "loguniform")', "log=False)", ("tests/run/test_sweep_settings.py",)),
    M("tensorboard: points one epoch late", "constrained_eq/run/tracking.py",
      "self.writer.add_scalar(tag, float(value), epoch)", "self.writer.add_scalar(tag, float(value), epoch + 1)",
      ("tests/run/test_tracking.py",)),
    M("tensorboard: nested keys named like location keys dropped", "constrained_eq/run/tracking.py",
      "if not prefix and key in LOCATION_KEYS:", "if key in LOCATION_KEYS:", ("tests/run/test_tracking.py",)),
    M("import_path: the current folder shadows installed packages", "constrained_eq/_utils/import_path.py",
      "sys.path.append(cwd)", "sys.path.insert(0, cwd)", ("tests/utils/test_import_path.py",
                                                          "tests/run/test_user_code.py")),
    M("import_path: dotted attributes not followed", "constrained_eq/_utils/import_path.py",
      'for part in attribute.split("."):', "for part in [attribute]:",
      ("tests/utils/test_import_path.py", "tests/run/test_user_code.py")),
    M("parse: a target given twice accepted", "constrained_eq/core/problem/constraints.py",
      "        if positional in kwargs:\n", "        if False:\n", ("tests/core/problem/test_constraints.py",)),
    M("parse: unknown kinds not refused", "constrained_eq/core/problem/constraints.py",
      " or call.func.id not in kinds:", ":", ("tests/core/problem/test_constraints.py",)),
    # --- round 7: the typed problem, its schema, and the last hardening messages ---------------------------
    M("problem model: a key given though absent-is-default dropped", "constrained_eq/run/problem_model.py",
      'or f"{f.name}.{g.name}" in self.given}', "}", ("tests/run/test_problem_reference.py",)),
    M("problem reference: integer ranges without their maximum", "constrained_eq/run/problem_reference.py",
      'return {"type": "integer", "minimum": int(match[1]), "maximum": int(match[2])}',
      'return {"type": "integer", "minimum": int(match[1])}', ("tests/run/test_problem_reference.py",)),
    M("problem reference: required keys not required", "constrained_eq/run/problem_reference.py",
      '            holder.setdefault("required", []).append(name)', "            pass",
      ("tests/run/test_problem_reference.py",)),
    M("schema: look-alike keys not named", "constrained_eq/run/problem_schema.py",
      "    if not hidden:", "    if True:", ("tests/run/security/test_sec_unclear_lines.py",)),
    M("problem file: data larger than memory accepted", "constrained_eq/run/problem_file.py",
      "    if need > have // 2:", "    if need > have * 2:", ("tests/run/security/test_sec_unclear_lines.py",)),
    M("cli output: a cache failure blamed on --out", "constrained_eq/run/cli_output.py",
      "        if _in_data_cache(path):", "        if False:", ("tests/run/security/test_sec_unclear_lines.py",)),
    M("sweep: the storage password printed", "constrained_eq/run/sweep.py",
      '    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\\1***@", url)', "    return url",
      ("tests/run/security/test_sec_unclear_lines.py",)),
    M("sweep: study.db written through a link", "constrained_eq/run/sweep.py",
      "        refuse_link(path)  # SQLite", "        pass  # SQLite", ("tests/run/security/test_sec_links.py",)),
    M("tracking: TensorBoard written through a link", "constrained_eq/run/tracking.py",
      "        refuse_link(self.folder)  # event", "        pass  # event", ("tests/run/security/test_sec_links.py",)),
    M("cli: an empty --out taken for the current folder", "constrained_eq/run/cli.py",
      "    if not text.strip():", "    if False:", ("tests/run/security/test_sec_unclear_lines.py",)),
    M("data: an empty CEQ_CACHE taken for the current folder", "constrained_eq/data/_common.py",
      'return Path(os.environ.get("CEQ_CACHE") or', 'return Path(os.environ.get("CEQ_CACHE", "") if "CEQ_CACHE" in '
      'os.environ else', ("tests/run/security/test_sec_unclear_lines.py",)),
    # --- round 8: the training library (fit's settings and callbacks), the typed problem below the loader ----
    M("callbacks: on_epoch_end never called", "constrained_eq/training/loop.py",
      '        call_hooks(self.o.callbacks, "on_epoch_end", epoch, row)\n', "",
      ("tests/training/test_train.py", "tests/training/test_schedules.py")),
    M("callbacks: on_epoch_start after the epoch's steps", "constrained_eq/training/loop.py",
      '        call_hooks(self.o.callbacks, "on_epoch_start", epoch)\n', "",
      ("tests/training/test_train.py",)),
    M("callbacks: a callback's hooks called on the next one too", "constrained_eq/training/callbacks.py",
      "        method = getattr(callback, hook, None)", "        method = getattr(callbacks[-1], hook, None)",
      ("tests/training/test_train.py",)),
    M("settings: the grouped integers not checked", "constrained_eq/training/settings.py",
      '        check_int(value, name, "fit")', "        pass", ("tests/training/test_train.py",)),
    M("schedules: the row records the next epoch's rate", "constrained_eq/training/schedules.py",
      '        row[f"lr.{self.name}"] = float(self.schedules[0].optimizer.param_groups[0]["lr"])\n'
      "        for schedule in self.schedules:\n            schedule.set_epoch(epoch + 1)",
      "        for schedule in self.schedules:\n            schedule.set_epoch(epoch + 1)\n"
      '        row[f"lr.{self.name}"] = float(self.schedules[0].optimizer.param_groups[0]["lr"])',
      ("tests/training/test_schedules.py",)),
    M("optimizer groups: a parameter goes to the last matching group", "constrained_eq/run/optimizer_groups.py",
      "index = next((i for i, g in enumerate(groups) if fnmatch.fnmatchcase(name, g[\"params\"])), None)",
      "index = next((i for i, g in reversed(list(enumerate(groups))) if fnmatch.fnmatchcase(name, g[\"params\"])), "
      "None)", ("tests/core/solver/test_optimizers.py",)),
    M("strategies: the schedule's epochs not taken from training", "constrained_eq/run/strategies.py",
      "        options.setdefault(option, getattr(training, key))", "        pass",
      ("tests/test_extending.py",)),
    M("atomic io: torch imported with the module (a sweep file read after torch)", "constrained_eq/_utils/atomic_io.py",
      "from typing import Any\n", "from typing import Any\n\nimport torch  # noqa: F401\n", ("tests/test_startup.py",)),
    M("run selection: an accuracy ranked smallest first", "constrained_eq/run/selection.py",
      'return "max" if column.removeprefix("val_") in task.higher_is_better else "min"', 'return "min"',
      ("tests/training/test_train.py",)),
    M("cli: Optuna imported before the sweep file is read", "constrained_eq/run/cli.py",
      "    is_sweep_file = _is_sweep_file(args.file)  # a bad file",
      "    require_optuna()\n    is_sweep_file = _is_sweep_file(args.file)  # a bad file", ("tests/test_startup.py",)),
]


def _copy_repo(dest: Path) -> None:
    """Copy the files git tracks or would track (no virtual environments, caches or run folders)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _run_tests(repo: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str, float]:
    """Run ``tests`` in ``repo`` (stop at the first failure); return (exit code, last lines, seconds)."""
    cache = tempfile.mkdtemp(prefix="ceq-mutant-cache-")  # never reuse simulated data across mutants
    env = {**os.environ, "PYTHONPATH": str(repo), "CEQ_CACHE": cache, "OMP_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        code, output = -1, "timeout"
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return code, output, time.perf_counter() - start


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0]
    return output.strip().splitlines()[-1] if output.strip() else ""


def _try(repo: Path, m: Mutant, timeout: float) -> tuple[str, str]:
    """Apply ``m`` in ``repo``, run its tests, restore the file; return (verdict, detail)."""
    path = repo / m.file
    original = path.read_text()
    if original.count(m.old) != 1:
        return "stale", f"'old' found {original.count(m.old)} times in {m.file}"
    path.write_text(original.replace(m.old, m.new))
    try:
        code, output, seconds = _run_tests(repo, m.tests, timeout)
    finally:
        path.write_text(original)
    if code == 0:
        return "survived", f"{seconds:.0f} s"
    return "killed", f"{seconds:.0f} s; " + ("timeout" if code == -1 else _first_failure(output))


def main(argv: list[str] | None = None) -> int:
    """Run the chosen mutants; exit 0 when every one is killed, 1 with survivors, 2 when the tests fail unmutated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", action="append", default=[], help="run only mutants whose name contains this")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at once, each in its own copy")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant (default: 300)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.k or any(k.lower() in m.name.lower() for k in args.k)]
    if args.list:
        for m in chosen:
            print(f"{m.name:55s} {m.file:45s} {' '.join(m.tests)}")
        return 0
    jobs = max(1, min(args.jobs, len(chosen)))
    with tempfile.TemporaryDirectory(prefix="ceq-mutants-") as tmp:
        repos = [Path(tmp) / str(i) for i in range(jobs)]
        for repo in repos:
            _copy_repo(repo)
        tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        code, output, seconds = _run_tests(repos[0], tests, args.timeout * 3)
        if code != 0:
            print(f"the unmutated tests fail ({_first_failure(output)}); fix them first", file=sys.stderr)
            return 2
        print(f"unmutated: {len(tests)} test paths pass in {seconds:.0f} s", flush=True)
        free: queue.Queue[Path] = queue.Queue()
        for repo in repos:
            free.put(repo)

        def run(m: Mutant) -> tuple[Mutant, str, str]:
            repo = free.get()
            try:
                return (m, *_try(repo, m, args.timeout))
            finally:
                free.put(repo)

        verdicts: dict[str, list[Mutant]] = {"killed": [], "survived": [], "stale": []}
        with ThreadPoolExecutor(jobs) as pool:
            for m, verdict, detail in pool.map(run, chosen):
                verdicts[verdict].append(m)
                print(f"{verdict.upper() if verdict != 'killed' else verdict:9s} {m.name}  ({detail})", flush=True)
    killed, survived, stale = verdicts["killed"], verdicts["survived"], verdicts["stale"]
    tried = len(killed) + len(survived)
    print(f"\nkill rate: {len(killed)}/{tried} = {100 * len(killed) / max(tried, 1):.0f}%"
          + (f"; {len(stale)} stale" if stale else ""))
    for m in survived:
        print(f"  survivor: {m.name} ({m.file})")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
