"""Homotopic layers: f_eq(x) + γ·f_neq(x) with a learnable scalar γ per layer (ACE eq. 3, CR eq. 2).

This module is the *mechanism* (as ``torch.nn.utils.parametrize`` is for parametrizations);
the architectures that use it live in :mod:`constrained_eq.models`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from constrained_eq.core.problem.target import Target, register_target

__all__ = [
    "HomotopicLayer",
    "LinearBranch",
    "homotopic_layers",
    "gammas",
    "check_same_structure",
]


def _combine(eq_out: Any, neq_out: Any, gamma: torch.Tensor) -> Any:
    """Return eq_out + γ·neq_out, element-wise over (nested) tuples and lists of tensors."""
    if isinstance(eq_out, torch.Tensor):
        return eq_out + gamma * neq_out
    if isinstance(eq_out, tuple | list):
        if not isinstance(neq_out, tuple | list) or len(neq_out) != len(eq_out):
            raise ValueError("f_neq must return the same structure as f_eq")
        return type(eq_out)(_combine(a, b, gamma) for a, b in zip(eq_out, neq_out, strict=True))
    raise TypeError(f"Expected f_eq to return a Tensor or a tuple of Tensors (got {type(eq_out).__name__})")


def _describe(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return f"Tensor(shape={tuple(out.shape)}, dtype={out.dtype})"
    if isinstance(out, tuple | list):
        return f"({', '.join(_describe(o) for o in out)})"
    return type(out).__name__


def check_same_structure(eq_out: Any, neq_out: Any, layer_name: str) -> None:
    """Raise a ``ValueError`` unless f_neq's output has f_eq's structure, shapes and dtypes."""
    if _describe(eq_out) != _describe(neq_out):
        raise ValueError(
            f"f_neq of the relaxed {layer_name} must return what f_eq returns; pass a matching 'neq_factory'.\n"
            f"  expected: {_describe(eq_out)}\n"
            f"  actual:   {_describe(neq_out)}"
        )


class HomotopicLayer(nn.Module):
    r"""A layer :math:`f(x) = f_{eq}(x) + \gamma f_{neq}(x)` on the same input (ACE eq. 3).

    ``γ = 0`` gives back the equivariant layer exactly.

    Args:
        eq (nn.Module): The equivariant branch f_eq.
        neq (nn.Module): The unconstrained branch f_neq; it takes the same arguments as ``eq`` and
            returns the same structure (a tensor or a tuple of tensors).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`, as ACE).
        check_output (bool, optional): Check on the first forward that f_neq returns the same
            structure, shapes and dtypes as f_eq, and raise a ``ValueError`` naming both otherwise
            (default: :obj:`False`; :func:`relax` turns it on).

    Shapes:
        - **gamma:** ``()``
    """

    def __init__(self, eq: nn.Module, neq: nn.Module, gamma_init: float = 1.0, *, check_output: bool = False) -> None:
        super().__init__()
        self.eq = eq
        self.neq = neq
        self.gamma_init = float(gamma_init)
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))
        self._check_pending = check_output

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        eq_out, neq_out = self.eq(*args, **kwargs), self.neq(*args, **kwargs)
        if self._check_pending:
            check_same_structure(eq_out, neq_out, type(self.eq).__name__)
            self._check_pending = False
        return _combine(eq_out, neq_out, self.gamma)

    def reset_parameters(self) -> None:
        """Re-initialise both branches (those that can) and set γ back to ``gamma_init``."""
        for branch in (self.eq, self.neq):
            if callable(getattr(branch, "reset_parameters", None)):
                branch.reset_parameters()
        with torch.no_grad():
            self.gamma.fill_(self.gamma_init)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma.detach().item():.4g}"


def _lie_algebra(rep: Any, dim: int, field_name: str) -> torch.Tensor | None:
    """Return the stacked algebra matrices dρ(A_k) of ``rep`` as a ``(K, dim, dim)`` tensor (or None)."""
    if rep is None:
        return None
    matrices = rep if isinstance(rep, torch.Tensor) else rep.lie_algebra()
    if matrices.dim() != 3 or matrices.shape[1:] != (dim, dim):
        raise ValueError(
            f"Expected '{field_name}' to give algebra matrices of shape (K, {dim}, {dim})\n"
            f"  got: {tuple(matrices.shape)}"
        )
    return matrices


class LinearBranch(nn.Module):
    r"""A dense linear f_neq on flat features, :math:`z \mapsto W z`, that knows the group's action.

    The unconstrained branch of CR (eq. 2) and the "linear layer" of ACE. When ``rep_in``/``rep_out``
    are given, CR's Lie derivative :math:`L_A(W) = W\,d\rho_{in}(A) - d\rho_{out}(A)\,W` is available
    analytically. While ``recording`` is ``True`` the last input is kept (detached) in ``last_input``
    for penalties that need it.

    Args:
        in_features (int): Size of the flat input.
        out_features (int): Size of the flat output.
        rep_in (Tensor or object with ``lie_algebra()``, optional): dρ_in(A_k), shape ``(K, in, in)``.
        rep_out (Tensor or object with ``lie_algebra()``, optional): dρ_out(A_k), shape ``(K, out, out)``.
        bias (bool, optional): Add a bias (default: :obj:`False`; the theorems need f_neq(0) = 0).
        init_std (float, optional): If given, initialise W ~ N(0, init_std²) (CR uses 1e-4).

    Shapes:
        - **input:** ``(*, in_features)``
        - **output:** ``(*, out_features)``
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rep_in: Any = None,
        rep_out: Any = None,
        *,
        bias: bool = False,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.init_std = init_std
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        algebra_in = _lie_algebra(rep_in, in_features, "rep_in")
        algebra_out = _lie_algebra(rep_out, out_features, "rep_out")
        if (algebra_in is None) != (algebra_out is None):
            raise ValueError("Expected 'rep_in' and 'rep_out' to be given together (got only one)")
        self.register_buffer("algebra_in", algebra_in, persistent=False)
        self.register_buffer("algebra_out", algebra_out, persistent=False)
        self.recording = False
        self.last_input: torch.Tensor | None = None
        self.reset_parameters()

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        if self.init_std is not None:
            nn.init.normal_(self.linear.weight, std=self.init_std)
            if self.linear.bias is not None:
                nn.init.zeros_(self.linear.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.recording:
            self.last_input = z.detach()
        return self.linear(z)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, equivariance_known={self.algebra_in is not None}"


def homotopic_layers(model: nn.Module) -> Iterator[HomotopicLayer]:
    """Yield the homotopic layers of ``model`` in registration (depth-first) order."""
    for module in model.modules():
        if isinstance(module, HomotopicLayer):
            yield module


_LAYER_CACHE = "_ceq_homotopic_layers"


def _module_tree_layers(model: nn.Module) -> list[HomotopicLayer]:
    """``list(homotopic_layers(model))``, cached on ``model`` and re-checked against its module tree.

    The ``gammas`` target runs every step, and walking ``model.modules()`` costs tens of µs on a
    large model. The cache records, for every module below ``model``, its ``_modules`` dict and
    the children in it; the traversal of :func:`homotopic_layers` depends on nothing else, so the
    cached list is returned only when every one of them is unchanged (any ``relax``/``project``,
    ``setattr``, ``del``, ``insert``, … of a submodule, anywhere in the tree, recomputes it). The
    check costs a fraction of the walk. The cache holds no reference to ``model`` itself, so it
    adds no reference cycle: a model is still freed as soon as it is dropped.
    """
    cached = model.__dict__.get(_LAYER_CACHE)
    if cached is not None:
        root_modules, root_children, below, layers, root_is_layer = cached
        if (model._modules is root_modules and tuple(root_modules.values()) == root_children
                and all(m._modules is d and tuple(d.values()) == children for m, d, children in below)):
            return [model, *layers] if root_is_layer else layers
    modules = list(model.modules())
    below = tuple((m, m._modules, tuple(m._modules.values())) for m in modules[1:])
    layers = [m for m in modules[1:] if isinstance(m, HomotopicLayer)]
    root_is_layer = isinstance(model, HomotopicLayer)
    try:
        model.__dict__[_LAYER_CACHE] = (model._modules, tuple(model._modules.values()), below, layers, root_is_layer)
    except (AttributeError, TypeError):  # a module type that refuses new attributes: no cache
        pass
    return [model, *layers] if root_is_layer else layers


def _gamma_vector(model: nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
    layers = _module_tree_layers(model)
    if not layers:
        raise ValueError(
            f"Expected the model to contain HomotopicLayer modules (got none in {type(model).__name__}); "
            "wrap its equivariant layers with constrained_eq.relax(model) first"
        )
    return torch.stack([layer.gamma for layer in layers])


def _gamma_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [layer.gamma for layer in _module_tree_layers(model)]


gammas = register_target(Target(_gamma_vector, "gammas", needs_batch=False, variables=_gamma_parameters,
                                from_variables=torch.stack))
gammas.__doc__ = "The vector γ = (γ_1, …, γ_L) of a relaxed model: ``gammas(model) -> Tensor (L,)``."
