"""Shared by the model tests: both float dtypes, and the E(3) action on stacked positions and velocities."""

import pytest
import torch


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    """Each equivariance test runs in both dtypes, with ``assert_equivariant``'s tolerance for the dtype."""
    return request.param


def _e3_action(*translated: bool, rotate: bool = True):
    """``act(g, x)`` for E(3) matrices ``g (n, 4, 4)`` and ``x (B, …, k, 3)``: ``x_c ↦ Q x_c + [translated_c] t``.

    Channel ``c`` of the second-to-last axis is a position (``translated[c]``) or a velocity; with
    ``rotate=False`` only the translation acts.
    """

    def act(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q, t = g[:, :3, :3], g[:, :3, 3]
        mask = torch.tensor(translated, dtype=x.dtype)[:, None]  # (k, 1)
        shape = (g.shape[0],) + (1,) * (x.dim() - 1) + (3,)
        moved = torch.einsum("gij,b...j->gb...i", q, x) if rotate else x.expand(g.shape[0], *x.shape)
        return moved + mask * t.reshape(shape)

    return act


@pytest.fixture
def e3_action():
    """The factory :func:`_e3_action`."""
    return _e3_action
