r"""CR's Lie-derivative regulariser on the linear branches, as a penalty or as a constraint.

For every :class:`~constrained_eq.homotopy.LinearBranch` ``W`` of a model, with ``x`` its recorded
(detached) input over the batch and ``A`` the Lie-algebra generators (CR eq. 5, aggregation of the
CR code, SPEC §1.5 (b)):

.. math::
    \ell_i = \sqrt{\textstyle\sum_{x, A} \|L_A(W_i)\,x\|^2}, \qquad
    b_i = \sqrt{\textstyle\sum_{x} \|W_i x\|^2}, \qquad L_A(W) = W\,d\rho_{in}(A) - d\rho_{out}(A)\,W.

Registered targets, each ``(model, batch, output) -> Tensor (L,)``: ``lie_derivative_norms``
(ℓ), ``branch_norms`` (b) and ``lie_regularizer`` (ℓ + b, CR's penalty).

The values are computed from the inputs the branches saw in the **current** forward: the first
evaluation on a model turns input recording on for all its branches, so run a forward after that
(or call :func:`~constrained_eq.homotopy.set_recording` before the first forward). The inputs are
detached, so the penalty trains only ``W`` (as CR does).

**Evaluation.** With ``X`` the ``N × in`` matrix of recorded inputs and ``G = XᵀX`` its Gram matrix
(``in × in``, built once per branch and evaluation, without a graph since ``X`` is detached), every
sum over the batch is a trace:

.. math::
    \textstyle\sum_x \|M x\|^2 = \operatorname{tr}(M G M^\top) = \sum_{o,i} (M G)_{oi} M_{oi},
    \qquad \ell^2 = \sum_A \sum (L_A G) \odot L_A, \qquad b^2 = \sum (W G) \odot W.

This costs ``N·in² + (K+1)·out·in²`` multiply-adds instead of the direct ``(K+1)·N·out·in`` (``K`` generators),
so it is used when ``N ≥ in`` (always the case on the N-body models, where ``N`` = edges × batch is in the
thousands and ``in`` ≤ a few hundred); below that the direct form ``‖L_A X^\top‖`` is kept. Both give the same
value and gradient ``∂ℓ/∂W = Σ_A (L_A G dρ_in(A)ᵀ − dρ_out(A)ᵀ L_A G)/ℓ`` to rounding; the Gram form squares the
conditioning of ``X``, which only matters when ``‖L_A X^\top‖ ≪ ‖L_A‖‖X‖`` (then a tiny negative rounding of the
quadratic form is clamped to 0). At ℓ = 0 the square root gets the subgradient 0, as ``Tensor.norm`` gives.
A batched ``torch.func.jvp`` of the branch along the generators would still form all ``K × N × out`` values
``L_A x``; the branch is linear, so the closed form above is exact and reads the ``N`` rows once (in ``G``).

**Low rank.** The generators act on few coordinates when most features are scalars (EGNN's branch: 6 of 70
inputs, 3 of 67 outputs). With ``R`` the rows of any ``dρ_in(A)`` that hold a nonzero and ``C`` the columns
of any ``dρ_out(A)`` that do, ``W dρ_in(A) = W_{:R}\,dρ_in(A)_{R:}`` and ``dρ_out(A) W = dρ_out(A)_{:C} W_{C:}``, so

.. math::
    L_A = U_A V_A, \quad U_A = [\,W_{:R},\ -d\rho_{out}(A)_{:C}\,], \quad
    V_A = \begin{bmatrix} d\rho_{in}(A)_{R:} \\ W_{C:} \end{bmatrix}, \qquad
    \ell^2 = \textstyle\sum_A \sum (U_A^\top U_A) \odot (V_A G V_A^\top),

with ``r = |R| + |C|``: ``K·r·(in² + r·(in + out))`` multiply-adds instead of ``K·out·in·(2·in + out)``. It is
used when ``2r ≤ min(in, out)``; ``R`` and ``C`` are read off the generators once per branch (one host read
the first time, and again only after the branch's buffers move).

**Sparse generators.** When fewer than ``K·n²/16`` entries of ``dρ`` are nonzero (irreps' so(3) generators
have about two per row), ``W dρ_in(A)`` and ``dρ_out(A) W`` are built by gathering the columns (rows) of ``W``
that each nonzero reads, ``O(out · nnz)``, instead of dense products.

**Stacked branches.** Branches with the same shapes, generators, dtype and number of recorded rows (every
layer of an EGNN or SEGNN) are evaluated as one stack ``(B, out, in)``, so the penalty costs a fixed number
of batched operations rather than that number per layer; the values come back in the model's order.
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import torch
from torch import nn

from constrained_eq.core.problem.constraints import Inequality, Penalty
from constrained_eq.core.problem.target import Target, register_target
from constrained_eq.homotopy.layers import LinearBranch
from constrained_eq.homotopy.recording import set_recording
from constrained_eq.symmetry.groups import Group, parse_group

__all__ = ["LieDerivative", "lie_derivative_norms", "branch_norms", "lie_regularizer"]

_RECORDING_ENABLED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _branch_inputs(model: nn.Module, name: str, need_rep: bool) -> list[tuple[str, LinearBranch, torch.Tensor]]:
    just_enabled = model not in _RECORDING_ENABLED
    if just_enabled:
        set_recording(model, True)
        _RECORDING_ENABLED.add(model)
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, LinearBranch)]
    if not found:
        raise ValueError(
            f"{name}: expected the model to contain LinearBranch modules (got none in {type(model).__name__}); "
            "relax it with constrained_eq.relax(model) or build its f_neq from LinearBranch"
        )
    out = []
    for branch_name, branch in found:
        if need_rep and branch.algebra_in is None:
            raise ValueError(
                f"{name}: expected LinearBranch '{branch_name}' to have 'rep_in' and 'rep_out' (got None); "
                "build it as LinearBranch(in, out, rep_in=..., rep_out=...), e.g. with IrrepsRep or VectorRep"
            )
        if branch.last_input is None:
            hint = (
                "input recording was off and is now on: run the model forward again before evaluating"
                if just_enabled
                else "the branch was not called in the forward pass"
            )
            raise ValueError(
                f"{name}: expected LinearBranch '{branch_name}' to have a recorded input (got None); {hint} "
                "(or call constrained_eq.homotopy.set_recording(model) before the first forward)"
            )
        out.append((branch_name, branch, branch.last_input.reshape(-1, branch.in_features)))
    return out


def _gram(x: torch.Tensor) -> torch.Tensor | None:
    """``G = XᵀX`` of the ``N × in`` recorded inputs when ``N ≥ in``; ``None`` (direct form) when ``N < in``."""
    if x.shape[0] < x.shape[1]:
        return None
    with torch.no_grad():
        return x.T @ x


def _sqrt0(square: torch.Tensor) -> torch.Tensor:
    """√q for q ≥ 0 with the subgradient 0 at q ≤ 0 (a rounding below 0 is read as 0; √'s gradient at 0 is ∞)."""
    positive = square > 0
    return torch.where(positive, torch.where(positive, square, torch.ones_like(square)).sqrt(), 0.0)


class _Action(NamedTuple):
    """What the penalty reads off a branch's generators once: a key for grouping, and the low-rank factors."""

    key: tuple  # equal for branches with equal generators (and shapes)
    rows: torch.Tensor | None  # R, or None when the low-rank form does not pay
    cols: torch.Tensor | None  # C
    p_rows: torch.Tensor | None  # dρ_in(A)_{R:}, (K, |R|, in)
    q_cols: torch.Tensor | None  # -dρ_out(A)_{:C}, (K, out, |C|)
    p_entries: _Entries | None = None  # the nonzeros of dρ_in, when few (for L_A without dense products)
    q_entries: _Entries | None = None  # the nonzeros of dρ_out


class _Entries(NamedTuple):
    """The nonzeros ``M[a, i, j] = value`` of generators ``M (K, n, n)``; ``flat`` is ``a·n + j`` (or ``a·n + i``)."""

    i: torch.Tensor
    j: torch.Tensor
    flat: torch.Tensor
    value: torch.Tensor


def _entries(matrices: torch.Tensor, by: str) -> _Entries | None:
    """The nonzeros of ``matrices``, flat-indexed ``by`` column (``"j"``) or row (``"i"``); None when dense.

    Sparse when fewer than ``K·n²/16`` entries are nonzero (the so(3) generators of irreps have about
    two per row): then ``W dρ(A)`` and ``dρ(A) W`` cost O(out · nnz) by gathering instead of O(out · n²).
    """
    k, n, _ = matrices.shape
    a, i, j = matrices.nonzero(as_tuple=True)
    if 16 * a.numel() > k * n * n:
        return None
    return _Entries(i, j, a * n + (j if by == "j" else i), matrices[a, i, j])


def _action(branch: LinearBranch) -> _Action:
    """The branch's :class:`_Action`, computed once (one host read) and cached against its algebra buffers.

    ``.to()`` and ``.double()`` replace the buffers, so the cache is re-read after them.
    """
    cached = branch.__dict__.get("_ceq_lie_action")
    if cached is not None and cached[0] is branch.algebra_in and cached[1] is branch.algebra_out:
        return cached[2]
    p, q = branch.algebra_in, branch.algebra_out
    key = (p.shape, q.shape, p.dtype, p.device, p.cpu().numpy().tobytes(), q.cpu().numpy().tobytes())
    rows = p.ne(0).any(dim=0).any(dim=1).nonzero().flatten()  # R: rows of some dρ_in(A)
    cols = q.ne(0).any(dim=0).any(dim=0).nonzero().flatten()  # C: columns of some dρ_out(A)
    if 2 * (rows.numel() + cols.numel()) <= min(branch.in_features, branch.out_features):
        action = _Action(key, rows, cols, p.index_select(1, rows), -q.index_select(2, cols))
    else:
        action = _Action(key, None, None, None, None, _entries(p, by="j"), _entries(q, by="i"))
    branch.__dict__["_ceq_lie_action"] = (p, q, action)
    return action


def _support(branch: LinearBranch) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The indices ``(R, C)`` of the low-rank form, or ``None`` when ``2(|R| + |C|) > min(in, out)``."""
    action = _action(branch)
    return None if action.rows is None else (action.rows, action.cols)


def _lie_derivatives(branch: LinearBranch, weight: torch.Tensor, action: _Action) -> torch.Tensor:
    """``L_A(W) = W dρ_in(A) − dρ_out(A) W`` for a stack ``(B, out, in)``: ``(B, K, out, in)``.

    With sparse generators each product is a gather of the columns (rows) of ``W`` that a nonzero reads,
    scaled, and summed into the one it writes (``index_add``); otherwise two dense products.
    """
    dtype, k = weight.dtype, branch.algebra_in.shape[0]
    batch, out, n_in = weight.shape
    if action.p_entries is None or action.q_entries is None:
        w = weight.unsqueeze(1)
        return w @ branch.algebra_in.to(dtype) - branch.algebra_out.to(dtype) @ w
    p, q = action.p_entries, action.q_entries
    right = weight.new_zeros(batch, out, k * n_in).index_add(
        2, p.flat, weight.index_select(2, p.i) * p.value.to(dtype))  # W dρ_in(A), A-major columns
    left = weight.new_zeros(batch, k * out, n_in).index_add(
        1, q.flat, weight.index_select(1, q.j) * q.value.to(dtype).unsqueeze(1))  # dρ_out(A) W, A-major rows
    return right.view(batch, out, k, n_in).transpose(1, 2) - left.view(batch, k, out, n_in)


def _lie_squares(branch: LinearBranch, weight: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """``ℓ² = Σ_A Σ (L_A G) ⊙ L_A`` for a stack of weights ``(B, out, in)`` sharing ``branch``'s generators."""
    action, dtype = _action(branch), weight.dtype
    gram = gram.unsqueeze(1)  # (B, 1, in, in): one G per weight, shared by the K generators
    if action.rows is None:
        lie = _lie_derivatives(branch, weight, action)  # (B, K, out, in)
        return ((lie @ gram) * lie).sum((1, 2, 3))
    batch, k = weight.shape[0], action.p_rows.shape[0]
    u = torch.cat([weight.index_select(2, action.rows).unsqueeze(1).expand(-1, k, -1, -1),
                   action.q_cols.to(dtype).expand(batch, -1, -1, -1)], dim=3)  # U_A: (B, K, out, r)
    v = torch.cat([action.p_rows.to(dtype).expand(batch, -1, -1, -1),
                   weight.index_select(1, action.cols).unsqueeze(1).expand(-1, k, -1, -1)], dim=2)  # V_A: (B, K, r, in)
    return ((u.mT @ u) * (v @ gram @ v.mT)).sum((1, 2, 3))


def _grouped_terms(branches: list[LinearBranch], xs: list[torch.Tensor], lie: bool, norm: bool) -> torch.Tensor:
    """ℓ, b or ℓ + b of branches with equal shapes, generators and row counts, evaluated as one stack: ``(B,)``."""
    weight = torch.stack([b.weight for b in branches])  # (B, out, in)
    with torch.no_grad():
        x = torch.stack(xs).to(weight.dtype)
        gram = x.mT @ x  # (B, in, in)
    squares = [_lie_squares(branches[0], weight, gram)] if lie else []
    if norm:
        squares.append(((weight @ gram) * weight).sum((1, 2)))
    return _sqrt0(torch.stack(squares)).sum(0)


def _direct_terms(branch: LinearBranch, x: torch.Tensor, lie: bool, norm: bool) -> torch.Tensor:
    """ℓ, b or ℓ + b of one branch with fewer rows than inputs (N < in), as direct sums over the rows."""
    weight, x = branch.weight, x.to(branch.weight.dtype)
    terms = []
    if lie:
        dtype = weight.dtype
        terms.append((x @ (weight @ branch.algebra_in.to(dtype) - branch.algebra_out.to(dtype) @ weight).mT).norm())
    if norm:
        terms.append((x @ weight.mT).norm())
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _terms(model: nn.Module, name: str, lie: bool, norm: bool) -> torch.Tensor:
    """One value per branch, in the order of ``model.named_modules()``; equal branches are evaluated together."""
    found = _branch_inputs(model, name, lie)
    groups: dict[tuple, list[int]] = {}
    for i, (_, branch, x) in enumerate(found):
        if _gram(x) is None:
            groups[("direct", i)] = [i]
            continue
        key = (branch.in_features, branch.out_features, x.shape[0], branch.weight.dtype, branch.weight.device,
               _action(branch).key if lie else None)
        groups.setdefault(key, []).append(i)
    values: list[torch.Tensor | None] = [None] * len(found)
    for key, members in groups.items():
        if key[0] == "direct":
            _, branch, x = found[members[0]]
            values[members[0]] = _direct_terms(branch, x, lie, norm)
            continue
        stacked = _grouped_terms([found[i][1] for i in members], [found[i][2] for i in members], lie, norm)
        if len(members) == len(found):  # one group (every branch alike): already in order
            return stacked
        for i, value in zip(members, stacked.unbind(), strict=True):
            values[i] = value
    return torch.stack(values)


def _lie_values(model: nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
    return _terms(model, "lie_derivative_norms", lie=True, norm=False)


def _norm_values(model: nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
    return _terms(model, "branch_norms", lie=False, norm=True)


def _regularizer_values(model: nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
    return _terms(model, "lie_regularizer", lie=True, norm=True)


lie_derivative_norms = register_target(
    Target(_lie_values, "lie_derivative_norms", needs_batch=True, prepare=set_recording)
)
branch_norms = register_target(Target(_norm_values, "branch_norms", needs_batch=True, prepare=set_recording))
lie_regularizer = register_target(
    Target(_regularizer_values, "lie_regularizer", needs_batch=True, prepare=set_recording)
)

_GROUP_TARGETS: dict[tuple[Group, bool], Target] = {}


def _group_target(group: Group, include_norm: bool) -> Target:
    """A target that also checks that every branch has as many generators as ``group``."""
    key = (group, include_norm)
    if key not in _GROUP_TARGETS:
        base = lie_regularizer if include_norm else lie_derivative_norms
        expected = group.lie_algebra().shape[0]

        def fn(model: nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
            for name, branch in model.named_modules():
                if isinstance(branch, LinearBranch) and branch.algebra_in is not None:
                    if branch.algebra_in.shape[0] != expected:
                        raise ValueError(
                            f"{base.name}: expected LinearBranch '{name}' to carry the {expected} generators of "
                            f"{group!r} (got {branch.algebra_in.shape[0]}); build its reps for {group!r}"
                        )
            return base.fn(model, batch, output)

        name = f"{base.name}_{group.symbol}{group.n}"
        _GROUP_TARGETS[key] = register_target(Target(fn, name, needs_batch=True, prepare=set_recording))
    return _GROUP_TARGETS[key]


def LieDerivative(  # noqa: N802 - a constraint factory, named like the constraint kinds
    group: Group | str | None = None,
    *,
    weight: float | None = None,
    bound: float | None = None,
    include_norm: bool = True,
    every: int = 1,
    name: str | None = None,
) -> Penalty | Inequality:
    r"""CR's regulariser :math:`\sum_i (\ell_i + b_i)` as a fixed penalty or, with a bound, a constraint.

    ``LieDerivative(weight=0.01)`` is CR's penalty (weight 0.01 on ℓ + b, per layer, summed).
    ``LieDerivative(bound=u)`` is the constraint ``ℓ_i + b_i ≤ u`` for every layer, with one dense
    multiplier. See the module docstring for ℓ, b and the recording of inputs.

    Args:
        group (Group or str, optional): A continuous group, or its repr (``"SO(3)"``, any registered
            symbol, as in problem files); if given, every branch must carry its number of generators.
            ``None`` trusts the branches' own ``rep_in``/``rep_out``.
        weight (float, optional): Penalty weight (default: :obj:`0.01` when no bound is given).
        bound (float, optional): Upper bound per layer; gives an :class:`Inequality`.
        include_norm (bool, optional): Add the branch norm b (CR) or constrain ℓ alone (default: :obj:`True`).
        every (int, optional): Evaluate the penalty every ``every`` steps with weight ``every · weight``
            (see :class:`~constrained_eq.core.problem.constraints.Penalty`); penalties only (default: :obj:`1`).
        name (str, optional): Constraint name in logs.

    Examples:
        >>> LieDerivative()
        Penalty(target=lie_regularizer, weight=0.01)
        >>> LieDerivative(weight=0.01, every=4)
        Penalty(target=lie_regularizer, weight=0.01, every=4)
        >>> LieDerivative(bound=0.1, include_norm=False)
        Inequality(target=lie_derivative_norms, bound=0.1)
    """
    if weight is not None and bound is not None:
        raise ValueError(
            f"Expected one of 'weight' or 'bound' (got weight={weight!r} and bound={bound!r}); "
            "use weight for CR's fixed penalty, bound for a constraint with a multiplier"
        )
    if bound is not None and every != 1:
        raise ValueError(
            f"Expected 'every' only with 'weight' (got every={every!r} and bound={bound!r}); a constraint with a "
            "multiplier is evaluated every step: drop 'every', or use weight for a penalty evaluated every k steps"
        )
    if isinstance(group, str):
        group = parse_group(group)
    if group is None:
        target = lie_regularizer if include_norm else lie_derivative_norms
    elif not isinstance(group, Group) or not group.is_continuous:
        raise ValueError(
            f"Expected 'group' to be None or a continuous group such as SO(3) (got {group!r}); "
            "finite groups have no Lie algebra"
        )
    else:
        target = _group_target(group, include_norm)
    if bound is not None:
        return Inequality(target, bound=bound, name=name)
    return Penalty(target, weight=0.01 if weight is None else weight, every=every, name=name)
