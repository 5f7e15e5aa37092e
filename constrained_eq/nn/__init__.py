"""Equivariant layers and architectures that use the homotopic mechanism (one public class per file)."""

from constrained_eq.nn.egnn import EGNN, EGNNBranch, EGNNLayer
from constrained_eq.nn.segnn import SEGNN, SEGNNBranch, SEGNNLayer, SteerableLinear
from constrained_eq.nn.vn_linear import VNLinear

__all__ = ["EGNN", "EGNNLayer", "EGNNBranch", "SEGNN", "SEGNNLayer", "SEGNNBranch", "SteerableLinear", "VNLinear"]
