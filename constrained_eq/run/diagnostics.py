r"""Reading ACE's dual dynamics: where and how much the symmetry breaks (SPEC §1.3, §1.4, §5.3).

Every function takes plain arrays — per-layer histories of shape ``(T, L)`` (T recorded steps,
L constrained layers) — so it does not depend on how a run was logged.

Equality constraints (Alg. 1, :math:`\gamma_i = 0`) end in one of three signatures:

* ``"oscillating"``: γ keeps crossing 0 without settling — many sign changes in the tail and an
  amplitude that does not shrink (symptom of symmetry breaking, or of too large step sizes);
* ``"bounded_multiplier"``: γ ≈ 0 while |λ| stays bounded away from 0; at stationarity
  :math:`\lambda_i^* = -\partial J_0/\partial\gamma_i|_{\gamma=0} \ne 0` — the data break the symmetry;
* ``"clean"``: γ → 0 and λ settles near 0 — the data are symmetric at that layer.

``"unsettled"`` is returned when none applies (γ far from 0 and not oscillating: train longer).
All thresholds are *relative* (to the peak of the same history), so scaling a signal or shifting
it in time does not change the verdict.

Resilient constraints (Alg. 2, :math:`|\gamma_i| \le u_i`) are read through their slacks: the
layers with the largest :math:`u_i` are where the symmetry breaks, and at a KKT point
:math:`u_i = \lambda_i/\rho` and, for active constraints, :math:`|\gamma_i| = u_i`.

Whether a layer's relaxation *matters* is judged against the objective's scale
(:func:`relaxation_significance`): by the sensitivity of the optimal value to the constraint level,
relaxing layer i from |γ_i| ≤ 0 to |γ_i| ≤ u_i lowers the objective by about :math:`\lambda_i u_i`, so
the layer is ``relaxed`` only when :math:`\lambda_i u_i \ge` ``RELAXED_RTOL`` · J₀ (0.1 % of the
objective), and ``tight`` otherwise. On exactly symmetric N-body data (``nbody_symmetric.yaml``,
``ace_resilient``, 200 epochs) every layer stays below 6e-5 · J₀; with the external field
(``nbody_field.yaml``) three of four layers exceed 1.6e-3 · J₀.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SIGNATURES",
    "KKTCheck",
    "as_history",
    "sign_changes",
    "classify_equality",
    "classify_layer",
    "slack_ranking",
    "check_resilient",
    "RELAXED_RTOL",
    "relaxation_significance",
]

RELAXED_RTOL = 1e-3

SIGNATURES = ("oscillating", "bounded_multiplier", "clean", "unsettled")


def as_history(values, field_name: str = "values") -> np.ndarray:
    """Return ``values`` as a float array of shape ``(T, L)`` (a 1-D history is one layer)."""
    a = np.asarray(values, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"Expected '{field_name}' to be a (T, L) history with T ≥ 2 (got shape {a.shape})")
    return a


def _check_fraction(value: float, field_name: str) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"Expected '{field_name}' to be in (0, 1] (got {value!r})")
    return float(value)


def _tail(a: np.ndarray, tail: float) -> np.ndarray:
    return a[max(0, a.shape[0] - max(2, int(round(tail * a.shape[0])))):]


def sign_changes(x, *, deadband: float = 0.0) -> np.ndarray:
    r"""Number of sign changes per column of a ``(T, L)`` history.

    Samples with :math:`|x| \le \text{deadband}` are ignored, so noise around 0 does not count.

    Examples:
        >>> sign_changes(np.array([1.0, -1.0, 1.0, 0.0, -1.0]))
        array([3])
    """
    a = as_history(x, "x")
    out = np.zeros(a.shape[1], dtype=int)
    for j in range(a.shape[1]):
        s = np.sign(a[:, j][np.abs(a[:, j]) > deadband])
        out[j] = int(np.count_nonzero(s[1:] != s[:-1]))
    return out


def classify_layer(
    gamma,
    lam,
    *,
    tail: float = 0.3,
    min_sign_changes: int = 6,
    amplitude_ratio: float = 0.5,
    deadband: float = 0.05,
    gamma_rtol: float = 0.05,
    lam_rtol: float = 0.1,
) -> str:
    r"""Signature of one equality-constrained layer from its histories γ(t), λ(t) (1-D arrays).

    Let :math:`\hat\gamma = \max_t |\gamma(t)|`, :math:`\hat\lambda = \max_t |\lambda(t)|` and the tail be the
    last ``tail`` fraction of the steps, split into halves :math:`T_1, T_2`.

    1. ``"oscillating"`` if γ changes sign at least ``min_sign_changes`` times in the tail (ignoring
       :math:`|\gamma| \le \text{deadband}\cdot\max_{tail}|\gamma|`) and
       :math:`\max_{T_2}|\gamma| \ge \text{amplitude\_ratio}\cdot\max_{T_1}|\gamma|` (not shrinking),
       and the tail amplitude is not negligible, :math:`\max_{tail}|\gamma| > \text{gamma\_rtol}\,\hat\gamma`.
    2. else, if :math:`\max_{tail}|\gamma| \le \text{gamma\_rtol}\,\hat\gamma` (γ ≈ 0):
       ``"bounded_multiplier"`` when :math:`\mathrm{mean}_{T_2}|\lambda| > \text{lam\_rtol}\,\hat\lambda`,
       ``"clean"`` otherwise (λ settled near 0 compared with its peak);
    3. else ``"unsettled"``.

    Args:
        gamma: γ_i(t), shape ``(T,)``.
        lam: λ_i(t), shape ``(T,)``.
        tail: Fraction of the history read as "late training" (default: :obj:`0.3`).
        min_sign_changes: Sign changes in the tail that make an oscillation (default: :obj:`6`).
        amplitude_ratio: Second-half over first-half tail amplitude above which the oscillation is
            "not shrinking" (default: :obj:`0.5`).
        deadband: Relative band around 0 ignored when counting sign changes (default: :obj:`0.05`).
        gamma_rtol: γ ≈ 0 means a tail amplitude below this fraction of the peak |γ| (default: :obj:`0.05`).
        lam_rtol: |λ| is "bounded away from 0" above this fraction of its peak (default: :obj:`0.1`).

    Examples:
        >>> t = np.arange(1000.0)
        >>> classify_layer(np.exp(-t / 50), 0.5 * (1 - np.exp(-t / 50)))
        'bounded_multiplier'
    """
    _check_fraction(tail, "tail")
    g = as_history(gamma, "gamma")[:, 0]
    lm = as_history(lam, "lam")[:, 0]
    if g.shape != lm.shape:
        raise ValueError(f"Expected 'gamma' and 'lam' to have the same length (got {g.shape} and {lm.shape})")
    g_tail, l_tail = _tail(g[:, None], tail)[:, 0], _tail(lm[:, None], tail)[:, 0]
    half = len(g_tail) // 2
    g_peak, l_peak = float(np.max(np.abs(g))), float(np.max(np.abs(lm)))
    amp = float(np.max(np.abs(g_tail)))
    if g_peak == 0.0 or amp <= gamma_rtol * g_peak:
        if l_peak > 0 and float(np.mean(np.abs(l_tail[half:]))) > lam_rtol * l_peak:
            return "bounded_multiplier"
        return "clean"
    crossings = int(sign_changes(g_tail, deadband=deadband * amp)[0])
    amp1, amp2 = float(np.max(np.abs(g_tail[:half]))), float(np.max(np.abs(g_tail[half:])))
    if crossings >= min_sign_changes and amp2 >= amplitude_ratio * amp1:
        return "oscillating"
    return "unsettled"


def classify_equality(gamma, lam, **thresholds) -> list[str]:
    """Signature per layer (see :func:`classify_layer`) from ``(T, L)`` histories γ and λ."""
    g, lm = as_history(gamma, "gamma"), as_history(lam, "lam")
    if g.shape != lm.shape:
        raise ValueError(f"Expected 'gamma' and 'lam' to have the same shape (got {g.shape} and {lm.shape})")
    return [classify_layer(g[:, i], lm[:, i], **thresholds) for i in range(g.shape[1])]


def slack_ranking(slack, *, tail: float = 0.1) -> np.ndarray:
    r"""Layers by decreasing slack :math:`\bar u_i` (mean over the last ``tail`` of the history).

    ``slack`` is a ``(T, L)`` history or a final ``(L,)`` vector.

    Examples:
        >>> slack_ranking(np.array([0.1, 0.5, 0.0])).tolist()
        [1, 0, 2]
    """
    u = np.asarray(slack, dtype=float)
    final = u if u.ndim == 1 else _tail(as_history(u, "slack"), _check_fraction(tail, "tail")).mean(0)
    return np.argsort(-final, kind="stable")


@dataclass
class KKTCheck:
    r"""Per-layer KKT residuals of a resilient run, averaged over the tail.

    Attributes:
        u: Mean slack :math:`\bar u_i`.
        lam_over_rho: Mean :math:`\bar\lambda_i/\rho`.
        abs_gamma: Mean :math:`|\gamma_i|`.
        active: :math:`\bar\lambda_i > \text{active\_tol}\cdot\max(\max_j \bar\lambda_j, \text{floor})`.
        slack_ok: :math:`|\bar u_i - \bar\lambda_i/\rho| \le \text{atol} + \text{rtol}\,\bar u_i`.
        gamma_ok: For active layers :math:`||\gamma_i| - \bar u_i| \le \text{atol} + \text{rtol}\,\bar u_i`;
            ``True`` for inactive ones (only :math:`|\gamma_i| \le u_i` is required there).
    """

    u: np.ndarray
    lam_over_rho: np.ndarray
    abs_gamma: np.ndarray
    active: np.ndarray
    slack_ok: np.ndarray
    gamma_ok: np.ndarray

    @property
    def ok(self) -> bool:
        """Whether every layer passes both checks."""
        return bool(self.slack_ok.all() and self.gamma_ok.all())


def check_resilient(
    gamma,
    lam,
    slack,
    rho: float = 1.0,
    *,
    tail: float = 0.1,
    rtol: float = 0.2,
    atol: float = 1e-3,
    active_tol: float = 0.05,
) -> KKTCheck:
    r"""Check :math:`u_i \approx \lambda_i/\rho` and, for active constraints, :math:`|\gamma_i| \approx u_i`.

    Both are KKT conditions of (PII) (stationarity in u: :math:`\rho u_i = \lambda_i`; complementary
    slackness: :math:`\lambda_i > 0 \Rightarrow |\gamma_i| = u_i`). Values are tail means, since
    stochastic steps keep the iterates moving around the KKT point.

    Args:
        gamma: ``(T, L)`` history of γ.
        lam: ``(T, L)`` history of λ.
        slack: ``(T, L)`` history of u.
        rho: The slack cost ρ > 0 (default: :obj:`1.0`).
        tail: Fraction of the history averaged (default: :obj:`0.1`).
        rtol: Relative tolerance of both checks (default: :obj:`0.2`).
        atol: Absolute tolerance of both checks (default: :obj:`1e-3`).
        active_tol: A constraint is active when its mean λ exceeds this fraction of the largest
            (default: :obj:`0.05`).
    """
    if not rho > 0:
        raise ValueError(f"Expected 'rho' to be a number > 0 (got {rho!r})")
    _check_fraction(tail, "tail")
    g, lm, u = as_history(gamma, "gamma"), as_history(lam, "lam"), as_history(slack, "slack")
    if not g.shape == lm.shape == u.shape:
        raise ValueError(f"Expected 'gamma', 'lam' and 'slack' to share a shape (got {g.shape}, {lm.shape}, {u.shape})")
    g_bar, l_bar, u_bar = (np.abs(_tail(a, tail)).mean(0) for a in (g, lm, u))
    active = l_bar > active_tol * max(float(l_bar.max()), atol)
    slack_ok = np.abs(u_bar - l_bar / rho) <= atol + rtol * u_bar
    gamma_ok = ~active | (np.abs(g_bar - u_bar) <= atol + rtol * u_bar)
    return KKTCheck(u_bar, l_bar / rho, g_bar, active, slack_ok, gamma_ok)


def relaxation_significance(lam, slack, objective, *, tail: float = 0.1) -> np.ndarray:
    r"""Per-layer objective gain of the relaxation over the objective, :math:`\bar\lambda_i \bar u_i / |\bar J_0|`.

    At a KKT point of the resilient problem, :math:`\partial J^\star/\partial u_i = -\lambda_i`: a slack
    u_i bought about :math:`\lambda_i u_i` of objective (in the objective's units). Dividing by the
    objective gives a scale-free number; bars are means over the last ``tail`` of the histories.

    Args:
        lam: ``(T, L)`` history of λ.
        slack: ``(T, L)`` history of u.
        objective: ``(T,)`` history of the objective J₀ (e.g. the train loss), or a scalar.
        tail: Fraction of the history averaged (default: :obj:`0.1`).

    Examples:
        >>> relaxation_significance([[0.1, 0.0]] * 4, [[0.1, 0.0]] * 4, [2.0] * 4).round(6).tolist()
        [0.005, 0.0]
    """
    _check_fraction(tail, "tail")
    lm, u = as_history(lam, "lam"), as_history(slack, "slack")
    j = np.asarray(objective, dtype=float)
    j_bar = float(np.abs(np.nanmean(_tail(j.reshape(-1, 1), tail)))) if j.ndim else abs(float(j))
    gain = np.abs(_tail(lm, tail)).mean(0) * np.abs(_tail(u, tail)).mean(0)
    return gain / j_bar if j_bar > 0 else np.full(gain.shape, np.inf)
