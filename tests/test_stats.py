"""Tests of the comparison statistics against scipy's own computations on fixed numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from automl import stats

# Validation errors of two arms at six paired seeds (fractions of 360 images).
ARM = [0.0139, 0.0167, 0.0111, 0.0194, 0.0139, 0.0083]
REF = [0.0194, 0.0222, 0.0139, 0.0194, 0.0250, 0.0167]


@pytest.mark.parametrize(("wrong", "n"), [(5, 360), (0, 360), (360, 360), (1, 1), (17, 40), (3, 10000)])
def test_wilson_interval_matches_scipy(wrong, n):
    reference = sps.binomtest(wrong, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = stats.wilson_interval(wrong, n)
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=1e-12)
    assert 0 <= low <= wrong / n <= high <= 1


def test_wilson_interval_at_another_confidence_and_from_a_fraction():
    reference = sps.binomtest(12, 200).proportion_ci(confidence_level=0.99, method="wilson")
    assert stats.wilson_interval(12, 200, 0.99) == pytest.approx((reference.low, reference.high), abs=1e-12)
    # 5 / 360 stored as a float error rate comes back to 5 wrong.
    assert stats.error_interval(5 / 360, 360) == stats.wilson_interval(5, 360)
    # The quickstart's case: 5 and 6 wrong out of 360 cannot be told apart, 5 and 40 can.
    assert stats.overlap(stats.wilson_interval(5, 360), stats.wilson_interval(6, 360))
    assert not stats.overlap(stats.wilson_interval(5, 360), stats.wilson_interval(40, 360))


@pytest.mark.parametrize(("wrong", "n"), [(-1, 10), (11, 10), (0, 0)])
def test_wilson_interval_refuses_impossible_counts(wrong, n):
    with pytest.raises(ValueError, match="wrong"):
        stats.wilson_interval(wrong, n)


def test_mean_ci_is_scipy_s_t_interval():
    mean, (low, high) = stats.mean_ci(ARM)
    reference = sps.t.interval(0.95, len(ARM) - 1, loc=np.mean(ARM), scale=sps.sem(ARM))
    assert mean == pytest.approx(np.mean(ARM), abs=1e-15)
    assert (low, high) == pytest.approx(reference, abs=1e-12)
    # Zero spread over seeds: a zero-width interval, not NaN.
    assert stats.mean_ci([0.25, 0.25, 0.25]) == (0.25, (0.25, 0.25))


@pytest.mark.parametrize("values", [[0.1], [], [0.1, float("nan")]])
def test_mean_ci_refuses_fewer_than_two_seeds_or_nan(values):
    with pytest.raises(ValueError, match="values"):
        stats.mean_ci(values)


def test_paired_difference_is_scipy_s_paired_t_interval():
    diff, ci = stats.paired_difference(ARM, REF)
    result = sps.ttest_rel(ARM, REF)
    reference = result.confidence_interval(0.95)
    assert diff == pytest.approx(np.mean(np.subtract(ARM, REF)), abs=1e-15)
    assert ci == pytest.approx((reference.low, reference.high), abs=1e-12)
    # Pairing matters: the unpaired interval of the difference is wider here.
    unpaired = sps.ttest_ind(ARM, REF).confidence_interval(0.95)
    assert ci[1] - ci[0] < unpaired.high - unpaired.low
    with pytest.raises(ValueError, match="one per seed"):
        stats.paired_difference(ARM, REF[:-1])


def _scipy_sign_flip(arm, ref):
    def mean_diff(x, y, axis):
        return np.mean(x - y, axis=axis)
    return sps.permutation_test((arm, ref), mean_diff, permutation_type="samples", n_resamples=np.inf,
                                alternative="two-sided", vectorized=True).pvalue


@pytest.mark.parametrize(("arm", "ref"), [
    (ARM, REF),
    ([0.1, 0.2, 0.3, 0.4, 0.5], [0.2, 0.3, 0.4, 0.5, 0.6]),      # every seed better: p = 2 / 2^5
    ([0.1, 0.3, 0.2, 0.4, 0.5, 0.7, 0.2], [0.2, 0.2, 0.25, 0.3, 0.6, 0.5, 0.2]),
    ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]),                           # identical arms: p = 1
])
def test_sign_flip_p_matches_scipy_s_exact_permutation_test(arm, ref):
    assert stats.sign_flip_p(arm, ref) == pytest.approx(_scipy_sign_flip(np.array(arm), np.array(ref)), abs=1e-12)


def test_sign_flip_p_with_five_seeds_all_better_is_one_sixteenth():
    assert stats.sign_flip_p([0.1] * 5, [0.2] * 5) == pytest.approx(2 / 32)


def test_sign_flip_p_draws_beyond_the_exact_limit_and_stays_close_to_exact():
    rng = np.random.default_rng(7)
    n = stats.EXACT_SIGN_FLIPS_UP_TO + 2
    ref = rng.uniform(0.1, 0.2, n)
    arm = ref + rng.normal(0.01, 0.02, n)
    exact = _scipy_sign_flip(arm, ref)
    drawn = stats.sign_flip_p(arm, ref)
    assert 0.01 < exact < 0.99  # a case where the draws could be visibly wrong
    assert drawn == pytest.approx(exact, abs=0.01)
    assert stats.sign_flip_p(arm, ref) == drawn  # seeded: the same every run


def _holm_rejects(pvalues, alpha):
    """Holm's procedure as he wrote it: walk the sorted p-values, stop at the first above alpha / (m - i)."""
    m = len(pvalues)
    rejected = set()
    for i, index in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        if pvalues[index] > alpha / (m - i):
            break
        rejected.add(index)
    return rejected


@pytest.mark.parametrize("pvalues", [
    [0.01, 0.04, 0.03, 0.005], [0.2, 0.2, 0.01], [0.5], [0.0625, 0.0625, 0.125, 1.0], [0.001, 0.9, 0.011, 0.02],
])
def test_holm_rejects_exactly_what_the_step_down_procedure_rejects(pvalues):
    adjusted = stats.holm(pvalues)
    assert all(a >= p for a, p in zip(adjusted, pvalues))
    for alpha in np.linspace(0.001, 1, 400):
        assert {i for i, a in enumerate(adjusted) if a <= alpha} == _holm_rejects(pvalues, alpha), alpha


def test_holm_on_a_worked_example():
    # Sorted 0.005, 0.01, 0.03, 0.04 are scaled by 4, 3, 2, 1 and made non-decreasing.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([]) == []
    with pytest.raises(ValueError, match="p-values"):
        stats.holm([0.5, 1.5])


def test_p_better_counts_the_seeds_the_arm_wins_and_half_the_ties():
    assert stats.p_better([0.1, 0.2, 0.3, 0.4], [0.2, 0.2, 0.1, 0.5]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert stats.p_better(ARM, ARM) == 0.5
    wins = np.mean(np.array(ARM) < np.array(REF)) + 0.5 * np.mean(np.array(ARM) == np.array(REF))
    assert stats.p_better(ARM, REF) == pytest.approx(wins)


def test_versus_gathers_the_paired_statistics():
    result = stats.versus(ARM, REF)
    assert (result.diff, result.ci) == stats.paired_difference(ARM, REF)
    assert result.p == stats.sign_flip_p(ARM, REF)
    assert result.p_better == stats.p_better(ARM, REF)
    assert result.as_dict(0.1) == {"diff": result.diff, "ci": list(result.ci), "p": result.p, "p_holm": 0.1,
                                   "p_better": result.p_better}


def test_crossings_names_each_pair_whose_order_flips():
    means = {
        "10s": {"cosine": 0.10, "snapshot_ensemble": 0.12, "step_decay": 0.20},
        "20s": {"cosine": 0.08, "snapshot_ensemble": 0.08, "step_decay": 0.15},  # a tie hides nothing
        "40s": {"cosine": 0.07, "snapshot_ensemble": 0.05, "step_decay": 0.10},
    }
    found = stats.crossings(means)
    assert [c.as_dict() for c in found] == [{
        "better": "cosine", "worse": "snapshot_ensemble", "before": "10s", "after": "40s",
        "text": "cosine beats snapshot_ensemble at 10s, loses at 40s"}]


def test_crossings_back_and_forth_are_each_named():
    means = {1: {"a": 0.1, "b": 0.2}, 2: {"a": 0.3, "b": 0.2}, 3: {"a": 0.1, "b": 0.2}}
    assert [(c.better, c.worse, c.before, c.after) for c in stats.crossings(means)] == [
        ("a", "b", 1, 2), ("b", "a", 2, 3)]


def test_no_crossing_where_the_order_holds():
    means = {budget: {"a": 0.3 / budget, "b": 0.4 / budget, "c": 0.5 / budget} for budget in (1, 2, 4, 8)}
    assert stats.crossings(means) == []
    # An arm missing at one budget is compared where it is present.
    means[2].pop("b")
    assert stats.crossings(means) == []
    assert stats.crossings({1: {"a": 0.1}}) == []


def test_every_pair_of_arms_is_checked():
    budgets = [1, 2]
    arms = ["a", "b", "c", "d"]
    means = {1: dict(zip(arms, [0.1, 0.2, 0.3, 0.4])), 2: dict(zip(arms, [0.4, 0.3, 0.2, 0.1]))}
    found = {(c.better, c.worse) for c in stats.crossings({b: means[b] for b in budgets})}
    assert found == set(itertools.combinations(arms, 2))
