from constrained_eq.nn.egnn import EGNN, EGNNBranch, EGNNLayer
from constrained_eq.nn.segnn import SEGNN, SEGNNBranch, SEGNNLayer, SteerableLinear

__all__ = ["EGNN", "EGNNLayer", "EGNNBranch", "SEGNN", "SEGNNLayer", "SEGNNBranch", "SteerableLinear"]
