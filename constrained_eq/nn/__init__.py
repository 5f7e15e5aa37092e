"""Equivariant layers and architectures that use the homotopic mechanism (one public class per file)."""

from constrained_eq.nn.egnn import EGNN, EGNNBranch, EGNNLayer
from constrained_eq.nn.egno import EGNO, TemporalConv
from constrained_eq.nn.schnet import SchNet, SchNetBranch, SchNetInteraction
from constrained_eq.nn.segnn import SEGNN, SEGNNBranch, SEGNNLayer, SteerableLinear
from constrained_eq.nn.spectral_branch import SpectralBranch
from constrained_eq.nn.vn_chain import VNChain
from constrained_eq.nn.vn_dgcnn import VNDGCNN
from constrained_eq.nn.vn_linear import VNLinear
from constrained_eq.nn.vn_pointnet import VNPointNet

__all__ = [
    "EGNN",
    "EGNNLayer",
    "EGNNBranch",
    "EGNO",
    "TemporalConv",
    "SchNet",
    "SchNetBranch",
    "SchNetInteraction",
    "SEGNN",
    "SEGNNLayer",
    "SEGNNBranch",
    "SteerableLinear",
    "SpectralBranch",
    "VNChain",
    "VNDGCNN",
    "VNLinear",
    "VNPointNet",
]
