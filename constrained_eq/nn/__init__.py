from constrained_eq.nn.egnn import EGNN, EGNNBranch, EGNNLayer

__all__ = ["EGNN", "EGNNLayer", "EGNNBranch"]
