"""Detection of ACE's equality signatures and the resilient KKT checks on constructed histories."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from constrained_eq.run.diagnostics import (
    check_resilient,
    classify_equality,
    classify_layer,
    sign_changes,
    slack_ranking,
)

T = 2000
t = np.arange(T, dtype=float)


def oscillating(scale=1.0, shift=0.0):
    return scale * np.sin(2 * np.pi * (t + shift) / 97.0), scale * 0.3 * np.cos(2 * np.pi * (t + shift) / 97.0)


def bounded(scale=1.0, shift=0.0, c=0.7):
    s = np.clip(t - shift, 0, None)
    return scale * np.exp(-s / 150.0), scale * c * (1 - np.exp(-s / 150.0))


def clean(scale=1.0, shift=0.0):
    s = np.clip(t - shift, 0, None)
    return scale * np.exp(-s / 150.0), scale * (s / 150.0) * np.exp(-s / 150.0)


def test_constant_amplitude_sinusoid_is_an_oscillation():
    assert classify_layer(*oscillating()) == "oscillating"


def test_decaying_gamma_with_nonzero_limit_multiplier_is_bounded_multiplier():
    assert classify_layer(*bounded()) == "bounded_multiplier"


def test_decaying_gamma_and_multiplier_is_clean():
    assert classify_layer(*clean()) == "clean"


def test_damped_oscillation_is_not_an_oscillation():
    g = np.exp(-t / 150.0) * np.cos(2 * np.pi * t / 97.0)
    assert classify_layer(g, 0.4 * (1 - np.exp(-t / 150.0))) == "bounded_multiplier"


def test_gamma_stuck_away_from_zero_is_unsettled():
    assert classify_layer(np.full(T, 0.5) + 0.01 * np.sin(t), np.linspace(0, 1, T)) == "unsettled"


def test_classify_equality_reads_columns_per_layer():
    cases = [oscillating(), bounded(), clean()]
    gamma = np.stack([c[0] for c in cases], axis=1)
    lam = np.stack([c[1] for c in cases], axis=1)
    assert classify_equality(gamma, lam) == ["oscillating", "bounded_multiplier", "clean"]


@given(
    kind=st.sampled_from(["oscillating", "bounded_multiplier", "clean"]),
    g_scale=st.floats(1e-3, 1e3),
    l_scale=st.floats(1e-3, 1e3),
    shift=st.floats(0, 300),
    flip=st.booleans(),
)
def test_verdict_is_invariant_to_scaling_and_time_shifts(kind, g_scale, l_scale, shift, flip):
    make = {"oscillating": oscillating, "bounded_multiplier": bounded, "clean": clean}[kind]
    g, lam = make(shift=shift)
    sign = -1.0 if flip else 1.0
    assert classify_layer(sign * g_scale * g, sign * l_scale * lam) == kind


def test_sign_changes_ignore_the_deadband():
    x = np.array([1.0, 0.01, -0.01, 0.02, -1.0, 1.0])
    assert sign_changes(x, deadband=0.1).tolist() == [2]


def test_slack_ranking_from_history_and_vector():
    u = np.tile([0.1, 0.4, 0.05], (50, 1))
    assert slack_ranking(u).tolist() == [1, 0, 2]
    assert slack_ranking(u[-1]).tolist() == [1, 0, 2]


def test_kkt_check_accepts_a_kkt_point_and_flags_violations():
    rho = 2.0
    u = np.tile([0.3, 0.0, 0.1], (100, 1))
    lam = rho * u
    gamma = np.tile([0.3, 0.0004, -0.1], (100, 1))
    check = check_resilient(gamma, lam, u, rho)
    assert check.ok and check.active.tolist() == [True, False, True]
    bad = check_resilient(gamma, lam, 2 * u, rho)
    assert not bad.ok and not bad.slack_ok[0]
    loose = check_resilient(0.2 * gamma, lam, u, rho)
    assert loose.slack_ok.all() and not loose.gamma_ok[0]


@pytest.mark.parametrize("bad", [np.zeros((1, 2)), np.zeros((2, 2, 2))])
def test_shapes_are_validated(bad):
    with pytest.raises(ValueError, match="Expected 'gamma'"):
        classify_equality(bad, bad)
