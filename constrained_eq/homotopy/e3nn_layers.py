"""e3nn's equivariant layers as relaxable layer types: ``relax`` wraps ``o3.Linear`` and ``o3.TensorProduct``.

Registered by import path through :func:`~constrained_eq.homotopy.relax.register_relaxable`, the same public
function a user calls for a layer of their own: e3nn is optional and imported only when ``relax`` runs.
"""

from __future__ import annotations

from constrained_eq.homotopy.relax import FeatureSpec, register_relaxable
from constrained_eq.symmetry.reps import IrrepsRep

__all__: list[str] = []


def _e3nn_linear_spec(module) -> FeatureSpec:
    """e3nn's ``o3.Linear``: irreps in, irreps out (for ``relax``'s default f_neq)."""
    ins, out = module.irreps_in, module.irreps_out
    return FeatureSpec([(ins.dim,)], (out.dim,), IrrepsRep(str(ins)), IrrepsRep(str(out)))


def _e3nn_tensor_product_spec(module) -> FeatureSpec:
    """e3nn's ``o3.TensorProduct``: two irreps inputs (concatenated for f_neq), irreps out."""
    in1, in2, out = module.irreps_in1, module.irreps_in2, module.irreps_out
    return FeatureSpec([(in1.dim,), (in2.dim,)], (out.dim,), IrrepsRep(str(in1 + in2)), IrrepsRep(str(out)))


# by path: e3nn is optional and imported only when relax() runs
register_relaxable("e3nn.o3:Linear", _e3nn_linear_spec)
register_relaxable("e3nn.o3:TensorProduct", _e3nn_tensor_product_spec)
