"""Parameter uncertainty: sets of parameters drawn from a fit, and how much of the ten-year variance they add.

:func:`parameter_sets` draws ``n`` configs from the fit's large-sample law (each population's transformed
likelihood parameters from a normal with the inverse observed information as covariance, so every draw is a
valid config and correlations between ``sigma``, ``alpha``, ``rho``, ... are kept; the closed-form rates and the
mean cost from their own normal approximations). :func:`parameter_risk` simulates every set on the *same* keyed
random numbers (common random numbers: draw ``d`` has the same shocks under every set) and splits the variance
of the ten-year result into process and parameter risk.

This is the "posterior draws" route (a normal approximation to the posterior under a flat prior:
Bernstein-von Mises), run outside the engine. Inside one run, ``leadsim fit --parameter-sets N`` writes
:func:`parameter_set_values` into the fitted config as ``[[parameter_sets]]`` and ``simulation.parameter_draws``
gives each draw one of them (:mod:`leadsim.model.parameter_sets`, :mod:`leadsim.analysis.parameter_risk`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from leadsim.config import POPULATIONS, Config, LeadsimWarning, load_config
from leadsim.fit.estimate import FitResult, natural_parameters

__all__ = ["ParameterRisk", "parameter_risk", "parameter_set_values", "parameter_sets"]

_RATE_KEYS = ("exit_rate",)


def _clip01(v: float) -> float:
    return float(min(max(v, 0.0), 0.999))


def parameter_set_values(result: FitResult, n: int, seed: int = 12) -> list[dict[str, dict[str, float]]]:
    """``n`` parameter sets drawn from the fit's large-sample law, as ``{population: {key: value}}`` (fitted
    populations only; fixed ``seed``).

    Parameters
    ----------
    result : FitResult
        From :func:`leadsim.fit.estimate.fit_panel`.
    n : int
        Number of parameter sets.
    seed : int
        Seed of the parameter draws (not of the simulation).

    Notes
    -----
    For a fitted population, ``theta* ~ N(theta_hat, I^{-1})`` on the likelihood's transformed scale
    (``log sigma``, ``log(alpha - 1)``, ``logit p0``, ``atanh rho``, ``atanh beta``, ``c``, ``log k``), mapped back;
    ``mean_annual_cost`` and ``exit_rate`` are drawn from ``N(estimate, SE^2)`` (truncated to their ranges),
    independently of the rest (their estimators are closed forms of other statistics of the panel). Values are
    kept inside the config's ranges: ``tail_alpha`` in [2.01, 100] (the config refuses an infinite variance),
    ``sigma`` at most 4, the death multiplier at most 10, probabilities below 0.999.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        one: dict[str, dict[str, float]] = {}
        for name in POPULATIONS:
            pf = result.populations[name]
            if not pf.fitted or pf.theta is None or pf.theta_cov is None:
                continue
            cov = np.nan_to_num(pf.theta_cov)
            draw = rng.multivariate_normal(pf.theta, (cov + cov.T) / 2, method="eigh")
            draw[0] = pf.theta[0]
            vals = natural_parameters(draw, pf.estimates["zero_share"].value > 0, pf.tail_start)
            vals["tail_alpha"] = float(min(max(vals["tail_alpha"], 2.01), 100.0))
            vals["sigma"] = float(min(vals["sigma"], 4.0))
            vals["death_multiplier"] = float(min(vals["death_multiplier"], 10.0))
            for key in ("zero_share", "rho", "death_risk_beta", "mortality"):
                vals[key] = _clip01(vals[key])
            mac = pf.estimates["mean_annual_cost"]
            vals["mean_annual_cost"] = float(max(rng.normal(mac.value, mac.se), 0.05 * mac.value))
            for key in _RATE_KEYS:
                e = pf.estimates[key]
                vals[key] = _clip01(rng.normal(e.value, e.se))
            one[name] = vals
        out.append(one)
    return out


def parameter_sets(result: FitResult, fitted: Config, n: int, seed: int = 12) -> list[Config]:
    """``n`` configs: ``fitted`` (:func:`leadsim.fit.write.fitted_config`) with the values of
    :func:`parameter_set_values` (keys not fitted are kept)."""
    out = []
    for one in parameter_set_values(result, n, seed):
        over = {f"population.{name}.{k}": v for name, vals in one.items() for k, v in vals.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LeadsimWarning)
            out.append(load_config(fitted, overrides=over))
    return out


@dataclass(frozen=True)
class ParameterRisk:
    """Variance of the ten-year cumulative settlement per track, split into process and parameter risk.

    Attributes
    ----------
    tracks : list of str
    total_var, parameter_var : ndarray (tracks,)
        ``Var(Y)`` and ``Var_theta(E[Y | theta])`` (the latter never below 0).
    parameter_share : ndarray (tracks,)
        ``parameter_var / total_var``.
    set_means : ndarray (sets, tracks)
        Mean ten-year result of each parameter set.
    """

    tracks: list[str]
    total_var: np.ndarray
    parameter_var: np.ndarray
    parameter_share: np.ndarray
    set_means: np.ndarray

    def summary(self) -> str:
        return "\n".join(f"{t}: parameter risk {s:.2%} of the ten-year variance (sd total "
                         f"{np.sqrt(v):,.0f}, of which parameter {np.sqrt(p):,.0f})"
                         for t, s, v, p in zip(self.tracks, self.parameter_share, self.total_var,
                                               self.parameter_var, strict=True))


def parameter_risk(configs: list[Config], draws: int) -> ParameterRisk:
    """Simulate each parameter set with ``draws`` draws on common random numbers and split the variance.

    Notes
    -----
    Common random numbers make the design crossed: ``Y_{id} = mu + a_i + b_d + e_{id}`` with ``a`` the parameter
    set's effect, ``b`` the draw's shocks (shared by every set) and ``e`` their interaction. The two-way
    random-effects ANOVA without replication (Searle, Casella and McCulloch, *Variance Components*, 1992, §4)
    gives ``Var(a) = (MS_sets - MS_int) / draws`` and ``Var(b) = (MS_draws - MS_int) / sets`` (each floored
    at 0) and ``Var(Y) = Var(a) + Var(b) + MS_int``; the parameter-risk share is ``Var(a) / Var(Y)``.
    """
    from leadsim.simulate import simulate

    ys, tracks = [], None
    for cfg in configs:
        cfg = load_config(cfg, overrides={"simulation.draws": draws})
        ds = simulate(cfg, progress=False)
        ys.append(ds["cumulative_settlement"].transpose("draw", "track").values)
        tracks = [str(t) for t in ds["track"].values]
    y = np.array(ys)  # (sets, draws, tracks)
    n_sets, n_draws = y.shape[0], y.shape[1]
    m = y.mean(axis=1)
    grand = y.mean(axis=(0, 1))
    col = y.mean(axis=0)
    resid = y - m[:, None, :] - col[None, :, :] + grand
    dof = max((n_sets - 1) * (n_draws - 1), 1)
    ms_int = (resid**2).sum(axis=(0, 1)) / dof
    ms_sets = n_draws * m.var(axis=0, ddof=1) if n_sets > 1 else np.zeros_like(grand)
    ms_draws = n_sets * col.var(axis=0, ddof=1) if n_draws > 1 else np.zeros_like(grand)
    param = np.maximum((ms_sets - ms_int) / n_draws, 0.0)
    draw_var = np.maximum((ms_draws - ms_int) / n_sets, 0.0)
    total = param + draw_var + ms_int
    share = np.divide(param, total, out=np.zeros_like(total), where=total > 0)
    return ParameterRisk(tracks or [], total, param, share, m)
