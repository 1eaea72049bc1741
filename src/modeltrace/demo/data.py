"""Synthetic credit-scoring data for ``modeltrace demo``.

A small, seeded generator of loan applications with a known default
probability, so the demo can train a real model in a second and then send
production traffic that drifts in a controlled way: part-way through, incomes
fall (a shifted numeric feature) and the employment mix changes (a changed
category mix), while the other features stay put.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUMERIC = ("age", "income", "debt_ratio", "credit_lines", "loan_amount")
CATEGORICAL = ("employment", "region")
FEATURES = NUMERIC + CATEGORICAL

EMPLOYMENT = ("salaried", "self_employed", "unemployed", "retired")
REGIONS = ("north", "south", "east", "west")

_BASE_EMPLOYMENT_MIX = (0.62, 0.20, 0.06, 0.12)
_DRIFTED_EMPLOYMENT_MIX = (0.38, 0.22, 0.28, 0.12)


@dataclass(frozen=True)
class Drift:
    """How production traffic departs from training data (0 means none)."""

    income_shift: float = 0.0  # multiplicative fall of income, e.g. 0.35 = 35% lower
    employment_mix: bool = False  # switch to the drifted employment mix


NO_DRIFT = Drift()
DEMO_DRIFT = Drift(income_shift=0.35, employment_mix=True)


def applications(
    n: int, rng: np.random.Generator, drift: Drift = NO_DRIFT
) -> list[dict[str, object]]:
    """``n`` loan applications as a list of dicts (one row each)."""
    columns = {name: values.tolist() for name, values in _columns(n, rng, drift).items()}
    return [{name: columns[name][i] for name in FEATURES} for i in range(n)]


def default_labels(rows: list[dict[str, object]], rng: np.random.Generator) -> np.ndarray:
    """Draw whether each application defaults (1) from its true probability."""
    return (rng.random(len(rows)) < default_probability(rows)).astype(np.int64)


def default_probability(rows: list[dict[str, object]]) -> np.ndarray:
    """The true default probability of each application (the concept is fixed)."""
    income = np.array([float(r["income"]) for r in rows])  # type: ignore[arg-type]
    debt = np.array([float(r["debt_ratio"]) for r in rows])  # type: ignore[arg-type]
    age = np.array([float(r["age"]) for r in rows])  # type: ignore[arg-type]
    loan = np.array([float(r["loan_amount"]) for r in rows])  # type: ignore[arg-type]
    unemployed = np.array([r["employment"] == "unemployed" for r in rows], dtype=float)
    logit = (
        -1.2
        - 1.1 * (np.log(income) - np.log(52_000.0))
        + 2.4 * (debt - 0.35)
        - 0.02 * (age - 41.0)
        + 0.35 * (loan / income - 0.3)
        + 1.3 * unemployed
    )
    return 1.0 / (1.0 + np.exp(-logit))


def encode(rows: list[dict[str, object]]) -> np.ndarray:
    """Numeric design matrix for the model: numeric features and one-hot categories."""
    out = np.empty((len(rows), len(NUMERIC) + len(EMPLOYMENT) + len(REGIONS)), dtype=np.float64)
    for i, row in enumerate(rows):
        numeric = [float(row[name]) for name in NUMERIC]  # type: ignore[arg-type]
        numeric[1] = float(np.log(numeric[1]))  # log income
        out[i, : len(NUMERIC)] = numeric
        out[i, len(NUMERIC) :] = [row["employment"] == e for e in EMPLOYMENT] + [
            row["region"] == r for r in REGIONS
        ]
    return out


def _columns(n: int, rng: np.random.Generator, drift: Drift) -> dict[str, np.ndarray]:
    mix = _DRIFTED_EMPLOYMENT_MIX if drift.employment_mix else _BASE_EMPLOYMENT_MIX
    income = rng.lognormal(mean=np.log(52_000.0), sigma=0.45, size=n) * (1.0 - drift.income_shift)
    return {
        "age": rng.integers(21, 75, size=n).astype(np.float64),
        "income": np.round(income, 2),
        "debt_ratio": np.round(rng.beta(2.0, 4.0, size=n), 4),
        "credit_lines": rng.poisson(4.0, size=n).astype(np.float64),
        "loan_amount": np.round(rng.gamma(2.0, 7_500.0, size=n), 2),
        "employment": rng.choice(np.array(EMPLOYMENT, dtype=object), size=n, p=mix),
        "region": rng.choice(np.array(REGIONS, dtype=object), size=n),
    }
