from constrained_eq.data.nbody import NBodyBatch, NBodyDataset, load_nbody, simulate_nbody

__all__ = ["NBodyDataset", "NBodyBatch", "load_nbody", "simulate_nbody"]
