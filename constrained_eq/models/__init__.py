"""Equivariant layers and architectures that use the homotopic mechanism (one public class per file)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from constrained_eq._utils.lazy import lazy_names

# each class is imported from its file on first use: SchNet pulls in PyTorch Geometric, SEGNN e3nn
_HOME = {
    "EGNN": "constrained_eq.models.egnn",
    "EGNNBranch": "constrained_eq.models.egnn",
    "EGNNLayer": "constrained_eq.models.egnn",
    "EGNO": "constrained_eq.models.egno",
    "TemporalConv": "constrained_eq.models.egno",
    "SchNet": "constrained_eq.models.schnet",
    "SchNetBranch": "constrained_eq.models.schnet",
    "SchNetInteraction": "constrained_eq.models.schnet",
    "SEGNN": "constrained_eq.models.segnn",
    "SEGNNBranch": "constrained_eq.models.segnn",
    "SEGNNLayer": "constrained_eq.models.segnn",
    "SpectralBranch": "constrained_eq.models.spectral_branch",
    "SteerableLinear": "constrained_eq.models.steerable",
    "VNChain": "constrained_eq.models.vn_chain",
    "VNDGCNN": "constrained_eq.models.vn_dgcnn",
    "VNLinear": "constrained_eq.models.vn_linear",
    "VNPointNet": "constrained_eq.models.vn_pointnet",
}
__getattr__, __dir__ = lazy_names(__name__, _HOME)

if TYPE_CHECKING:
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
