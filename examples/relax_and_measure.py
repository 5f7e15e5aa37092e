"""Relax a small Vector-Neuron network, train it briefly, and read the symmetry metrics.

Run: ``python examples/relax_and_measure.py`` (a few seconds on CPU).
"""

import torch
from torch import nn

from constrained_eq.homotopy import branch_contributions, gammas, project, relax, set_recording
from constrained_eq.models import VNLinear
from constrained_eq.symmetry import (
    SO,
    LieDerivative,
    VectorRep,
    assert_equivariant,
    equivariance_error,
    equivariance_error_bound,
    projection_error,
)


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(VNLinear(4, 8), VNLinear(8, 2)).double()
    model = relax(model, scale="spectral", gamma_init=0.5)
    set_recording(model)  # branches keep their last input for the Lie penalty
    penalty = LieDerivative(SO(3), weight=0.01)

    x = torch.randn(64, 4, 3, dtype=torch.float64)
    y = x[:, :2] + 0.1 * x[:, :2].flip(-1)  # a slightly non-equivariant target
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        loss = (model(x) - y).pow(2).mean() + penalty.weight * penalty.target(model).sum()
        loss.backward()
        optimizer.step()

    reps = {"act_in": VectorRep(4), "act_out": VectorRep(2)}
    with torch.no_grad():
        print(f"gammas                 {gammas(model).numpy().round(3)}")
        print(f"contributions |γ f_neq| {branch_contributions(model, x).numpy().round(4)}")
        print(f"equivariance error     {equivariance_error(model, x, SO(3), **reps).item():.4f}")
        print(f"projection error       {projection_error(model, x).item():.4f}")
        print(f"Lie penalty per layer  {penalty.target(model).numpy().round(4)}")
        bound = equivariance_error_bound(gammas(model).detach(), B=1.0, M=2.0, x_norm=x[0].norm())
        print(f"Thm 4.2 bound (x_0)    {bound.item():.4f}  (M=2 is a loose guess here)")
        strict = project(model)
        print(f"projected model max equivariance error {assert_equivariant(strict, SO(3), x, **reps):.2e}")


if __name__ == "__main__":
    main()
