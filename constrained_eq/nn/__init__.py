"""Equivariant layers and architectures that use the homotopic mechanism."""

from constrained_eq.nn.vn_linear import VNLinear

__all__ = ["VNLinear"]
