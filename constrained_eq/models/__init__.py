"""Equivariant layers and architectures that use the homotopic mechanism (one public class per file)."""

from constrained_eq.models.egnn import EGNN, EGNNBranch, EGNNLayer
from constrained_eq.models.egno import EGNO, TemporalConv
from constrained_eq.models.schnet import SchNet, SchNetBranch, SchNetInteraction
from constrained_eq.models.segnn import SEGNN, SEGNNBranch, SEGNNLayer
from constrained_eq.models.spectral_branch import SpectralBranch
from constrained_eq.models.steerable import SteerableLinear
from constrained_eq.models.vn_chain import VNChain
from constrained_eq.models.vn_dgcnn import VNDGCNN
from constrained_eq.models.vn_linear import VNLinear
from constrained_eq.models.vn_pointnet import VNPointNet

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
