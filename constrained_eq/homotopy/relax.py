"""``relax`` / ``project``: attach γ·f_neq to the equivariant layers of a model and remove it again.

Like ``torch.nn.utils.parametrize`` (register / remove), but by replacing child modules on their
parent, never by swapping a module's class.
"""

from __future__ import annotations

import copy
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from constrained_eq.homotopy.layers import HomotopicLayer, LinearBranch, check_same_structure

__all__ = ["relax", "project", "is_relaxed", "register_relaxable", "relaxable_types", "FeatureSpec"]

_SCALES = ("none", "spectral", "weight")


class FeatureSpec(NamedTuple):
    """The feature shapes of an equivariant layer, from which :func:`relax` builds its default f_neq.

    Attributes:
        in_tails: The trailing feature shape of each tensor input, e.g. ``[(C, 3)]`` for ``(*, C, 3)``.
        out_tail: The trailing feature shape of the output.
        rep_in: The representation on the (flattened, concatenated) inputs, or ``None``.
        rep_out: The representation on the flattened output, or ``None``.
    """

    in_tails: list[tuple[int, ...]]
    out_tail: tuple[int, ...]
    rep_in: Any = None
    rep_out: Any = None


# layer type (or "module:Class", imported on use) -> its FeatureSpec; filled by register_relaxable
_RELAXABLE: dict[type | str, Callable[[nn.Module], FeatureSpec]] = {}


def register_relaxable(layer_type: type[nn.Module] | str, feature_spec: Callable[[nn.Module], FeatureSpec]) -> None:
    """Make ``relax(model)`` wrap every ``layer_type`` module by default, with f_neq built from ``feature_spec``.

    ``feature_spec(module) -> FeatureSpec`` gives the layer's input/output feature shapes and reps; the
    default f_neq is then a :class:`LinearBranch` on the flattened inputs, dry-run once on zeros.
    ``layer_type`` may be written ``"package.module:Class"`` for a type whose package is optional: it is
    imported when :func:`relax` runs and skipped when that fails (e3nn's layers are registered so).

    Raises:
        TypeError: If ``layer_type`` is neither an ``nn.Module`` subclass nor a ``"module:Class"`` string,
            or ``feature_spec`` is not callable.
    """
    if not (isinstance(layer_type, str) and ":" in layer_type) and not (
            isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"Expected 'layer_type' to be an nn.Module subclass or 'module:Class' (got {layer_type!r})")
    if not callable(feature_spec):
        raise TypeError(f"Expected 'feature_spec' to be callable (got {type(feature_spec).__name__})")
    _RELAXABLE[layer_type] = feature_spec


def _resolved(imported_only: bool = False) -> list[tuple[type, Callable[[nn.Module], FeatureSpec]]]:
    """The registered layer types, importing those given by path (skipping a package that is not installed).

    With ``imported_only`` a type given by path is left out while its module is not imported yet: no model
    can hold an instance of it then, and ``relax`` need not import e3nn (~1 s) for a model without it.
    """
    out = []
    for key, spec in list(_RELAXABLE.items()):
        if isinstance(key, str):
            module_name, _, attr = key.partition(":")
            if imported_only and module_name not in sys.modules:
                continue
            try:
                layer_type = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError):  # an optional package that is not installed
                continue
            _RELAXABLE.pop(key)
            _RELAXABLE.setdefault(layer_type, spec)
            key = layer_type
        out.append((key, spec))
    return out


def relaxable_types() -> tuple[type, ...]:
    """The layer types :func:`relax` wraps by default (those registered with :func:`register_relaxable`)."""
    return tuple(t for t, _ in _resolved())


class _FeatureBranch(nn.Module):
    """Apply a :class:`LinearBranch` to the flattened feature axes of the first ``num_inputs`` tensors.

    The trailing ``in_tails[k]`` axes of input ``k`` are flattened and concatenated; the output is
    reshaped to ``(*, *out_tail)``. Further arguments (e.g. ``edge_index``) are ignored.
    """

    def __init__(self, in_tails: Sequence[tuple[int, ...]], out_tail: tuple[int, ...], rep_in: Any, rep_out: Any):
        super().__init__()
        self.in_tails = [tuple(t) for t in in_tails]
        self.out_tail = tuple(out_tail)
        in_features = sum(int(torch.Size(t).numel()) for t in self.in_tails)
        out_features = int(torch.Size(self.out_tail).numel())
        self.branch = LinearBranch(in_features, out_features, rep_in, rep_out)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        flats = [x.flatten(-len(tail)) if len(tail) > 1 else x for x, tail in zip(args, self.in_tails, strict=False)]
        z = flats[0] if len(flats) == 1 else torch.cat(flats, dim=-1)
        out = self.branch(z)
        return out.unflatten(-1, self.out_tail) if len(self.out_tail) > 1 else out


def _auto_spec(module: nn.Module) -> tuple[list[tuple[int, ...]], tuple[int, ...], Any, Any, bool]:
    """(input tails, output tail, rep_in, rep_out, can_dry_run): a registered layer's, or read off its sizes."""
    for layer_type, feature_spec in _resolved(imported_only=True):
        if isinstance(module, layer_type):
            spec = feature_spec(module)
            return [tuple(t) for t in spec.in_tails], tuple(spec.out_tail), spec.rep_in, spec.rep_out, True
    for name_in, name_out in (("in_features", "out_features"), ("in_channels", "out_channels")):
        f_in, f_out = getattr(module, name_in, None), getattr(module, name_out, None)
        if isinstance(f_in, int) and isinstance(f_out, int) and f_in > 0 and f_out > 0:
            return [(f_in,)], (f_out,), None, None, isinstance(module, nn.Linear)
    raise TypeError(
        f"Expected a layer whose feature sizes are known (a registered type: "
        f"{', '.join(t.__name__ for t in relaxable_types()) or 'none'}; or one with "
        f"'in_features'/'out_features' or 'in_channels'/'out_channels') to build f_neq automatically "
        f"(got {type(module).__name__}); pass neq_factory=lambda module: <an nn.Module taking the same inputs>"
    )


def _apply_scale(neq: nn.Module, scale: str) -> None:
    """Fix the scale of every ``nn.Linear`` in f_neq, so that γ alone measures non-equivariance."""
    if scale == "none":
        return
    from torch.nn.utils import parametrizations

    for module in list(neq.modules()):
        if not isinstance(module, nn.Linear):
            continue
        if scale == "spectral":
            parametrizations.spectral_norm(module)
        else:
            parametrizations.weight_norm(module, dim=None)
            magnitude = module.parametrizations.weight.original0
            with torch.no_grad():
                magnitude.fill_(1.0)
            magnitude.requires_grad_(False)


def _reference_tensor(module: nn.Module) -> torch.Tensor | None:
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            return tensor
    return None


def _wrap(module: nn.Module, neq_factory: Callable | None, scale: str, gamma_init: float) -> HomotopicLayer:
    dry_inputs = None
    if neq_factory is None:
        in_tails, out_tail, rep_in, rep_out, can_dry_run = _auto_spec(module)
        neq = _FeatureBranch(in_tails, out_tail, rep_in, rep_out)
    else:
        neq = neq_factory(module)
        if not isinstance(neq, nn.Module):
            raise TypeError(
                f"Expected 'neq_factory' to return an nn.Module (got {type(neq).__name__}); "
                "wrap a function with a small nn.Module subclass"
            )
        try:
            in_tails, _, _, _, can_dry_run = _auto_spec(module)
        except TypeError:
            can_dry_run = False
    _apply_scale(neq, scale)
    ref = _reference_tensor(module)
    if ref is not None:
        neq = neq.to(device=ref.device, dtype=ref.dtype)
    if can_dry_run:
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = ref.device if ref is not None else None
        dry_inputs = [torch.zeros(2, *tail, dtype=dtype, device=device) for tail in in_tails]
        with torch.no_grad():
            check_same_structure(module(*dry_inputs), neq(*dry_inputs), type(module).__name__)
    return HomotopicLayer(module, neq, gamma_init, check_output=not can_dry_run)


def _resolve_layers(layers: Any) -> Callable[[nn.Module], bool]:
    if layers is None:
        types = tuple(t for t, _ in _resolved(imported_only=True))
        return lambda m: isinstance(m, types)
    if isinstance(layers, type):
        layers = [layers]
    if isinstance(layers, list | tuple):
        bad = [x for x in layers if not isinstance(x, type) or not issubclass(x, nn.Module)]
        if bad or not layers:
            raise TypeError(
                f"Expected 'layers' to be a list of nn.Module subclasses (got {layers!r}); "
                "e.g. layers=[e3nn.o3.Linear] or a filter layers=lambda module: ..."
            )
        types = tuple(layers)
        return lambda m: isinstance(m, types)
    if callable(layers):
        return layers
    raise TypeError(
        f"Expected 'layers' to be None, a list of module types or a callable filter(module) -> bool "
        f"(got {type(layers).__name__})"
    )


def relax(
    model: nn.Module,
    *,
    layers: Any = None,
    neq_factory: Callable[[nn.Module], nn.Module] | None = None,
    scale: str = "none",
    gamma_init: float = 1.0,
    inplace: bool = True,
) -> nn.Module:
    r"""Wrap the equivariant layers of ``model`` as :math:`f_{eq}(z) + \gamma_i f_{neq}(z)` (ACE eq. 3).

    Each matching child module is replaced on its parent by a :class:`HomotopicLayer` whose ``eq``
    is the original module (same object, same parameters) and whose ``neq`` is built by
    ``neq_factory(module)``, or by default a bias-free :class:`LinearBranch` :math:`W z` on the
    flattened features of the layer's tensor inputs (concatenated for tensor products; further
    arguments such as ``edge_index`` are not seen by it). For e3nn and Vector-Neuron layers the
    branch also carries ``rep_in``/``rep_out``, so :func:`~constrained_eq.homotopy.LieDerivative`
    can act on it. Where the input shapes are known (e3nn, VNLinear, ``nn.Linear``) f_neq is
    dry-run once on zeros and must return f_eq's shape and dtype; otherwise this is checked on the
    first forward.

    Args:
        model (nn.Module): The equivariant model; changed in place unless ``inplace=False``.
        layers (None, list of types or callable, optional): Which modules to wrap: ``None`` for the
            registered equivariant layers (e3nn ``o3.Linear``/``o3.TensorProduct``, ``VNLinear``, and any
            added with :func:`register_relaxable`), a list
            of module types, or a filter ``layers(module) -> bool``. Matches are not searched inside.
        neq_factory (callable, optional): ``neq_factory(module) -> nn.Module`` taking the layer's
            inputs and returning the same structure as the layer (needed for tuple in/out layers).
        scale (str, optional): ``"none"``, ``"spectral"`` (spectral norm of every ``nn.Linear`` in
            f_neq fixed to 1) or ``"weight"`` (Frobenius norm fixed to 1), so that γ alone measures
            non-equivariance, not γ times a growing branch (SPEC §5.4) (default: :obj:`"none"`).
        gamma_init (float, optional): Initial γ of every wrapped layer (default: :obj:`1.0`).
        inplace (bool, optional): If ``False``, relax a deep copy (default: :obj:`True`).

    Returns:
        nn.Module: The relaxed model (``model`` itself unless the root module was wrapped).

    Raises:
        ValueError: If no module matches, or f_neq's output differs from f_eq's.
        TypeError: If f_neq cannot be built automatically (pass ``neq_factory``).

    Examples:
        >>> from e3nn import o3
        >>> net = relax(nn.Sequential(o3.Linear("2x1o", "3x1o")), gamma_init=0.5)
        >>> net
        Sequential(
          (0): HomotopicLayer(
            gamma=0.5
            (eq): Linear(2x1o -> 3x1o | 6 weights)
            (neq): _FeatureBranch(
              (branch): LinearBranch(
                6, 9, equivariance_known=True
                (linear): Linear(in_features=6, out_features=9, bias=False)
              )
            )
          )
        )
    """
    if scale not in _SCALES:
        raise ValueError(f"Expected 'scale' to be one of {', '.join(map(repr, _SCALES))} (got {scale!r})")
    if neq_factory is not None and not callable(neq_factory):
        raise TypeError(f"Expected 'neq_factory' to be callable (got {type(neq_factory).__name__})")
    match = _resolve_layers(layers)
    if not inplace:
        model = copy.deepcopy(model)
    if not isinstance(model, HomotopicLayer) and match(model):
        return _wrap(model, neq_factory, scale, gamma_init)
    found: list[tuple[nn.Module, str, nn.Module]] = []

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, HomotopicLayer):
                continue
            if match(child):
                found.append((parent, name, child))
            else:
                visit(child)

    visit(model)
    if not found:
        raise ValueError(
            f"Expected 'layers' to match at least one module of {type(model).__name__} (got no match); "
            "pass layers=[<your equivariant layer type>] or a filter layers=lambda module: ..."
        )
    wrapped: dict[int, HomotopicLayer] = {}
    for parent, name, child in found:
        if id(child) not in wrapped:
            wrapped[id(child)] = _wrap(child, neq_factory, scale, gamma_init)
        setattr(parent, name, wrapped[id(child)])
    return model


def is_relaxed(model: nn.Module) -> bool:
    """``True`` if ``model`` contains a :class:`HomotopicLayer`."""
    return any(isinstance(m, HomotopicLayer) for m in model.modules())


def _strip(module: nn.Module, inplace: bool) -> nn.Module:
    if isinstance(module, HomotopicLayer):
        return _strip(module.eq, inplace)
    if not is_relaxed(module):
        return module
    target = module if inplace else copy.copy(module)
    if not inplace:
        target._modules = dict(module._modules)
        target._parameters = dict(module._parameters)
        target._buffers = dict(module._buffers)
    for name, child in module._modules.items():
        if child is not None:
            target._modules[name] = _strip(child, inplace)
    return target


def project(model: nn.Module, inplace: bool = False) -> nn.Module:
    r"""The strict model :math:`f_{\theta,0}`: every :class:`HomotopicLayer` replaced by its ``eq`` branch.

    The result has the architecture, parameter count and ``state_dict`` keys of the model before
    :func:`relax`, and holds the *same* parameter objects (``id`` unchanged), so
    ``project(model)(x)`` equals the relaxed model at γ = 0 exactly. With ``inplace=False`` the
    relaxed model is left untouched: only the containers on the path to a relaxed layer are
    shallow-copied, so the projection is a view that follows further training of the relaxed model.

    Args:
        model (nn.Module): A relaxed model.
        inplace (bool, optional): Remove the branches from ``model`` itself (default: :obj:`False`).

    Examples:
        >>> lin = nn.Linear(3, 3)
        >>> net = relax(nn.Sequential(lin), layers=[nn.Linear])
        >>> project(net)[0] is lin, is_relaxed(net)
        (True, True)
    """
    return _strip(model, inplace)
