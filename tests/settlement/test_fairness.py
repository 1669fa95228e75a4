"""Fair sharing of a community's benefit (lemgrid.settlement.fairness), against independent
computations: a three-member case by hand, the Shapley value by enumeration of every order of
joining (n! orders, each coalition's value computed directly), the core check (a MILP) by
enumeration of every coalition, and the rules' invariants on random games (hypothesis)."""

from __future__ import annotations

from functools import cache
from itertools import combinations, permutations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lemgrid.errors import InputError
from lemgrid.settlement.fairness import (RULES, SharingGame, allocate_eur, compare_rules,
                                         core_excess, shapley_eur)

BUY, SELL = 0.30, 0.10  # EUR/kWh: a shared kWh saves 0.20


def _hand_game() -> SharingGame:
    """One hour: A exports 2 kWh, B imports 1 kWh, C imports 3 kWh."""
    return SharingGame.from_positions([[-2.0, 1.0, 3.0]], 1.0, BUY, SELL, 0.0, ["A", "B", "C"])


def test_three_members_by_hand():
    game = _hand_game()
    # v(AB) = 0.2 x 1, v(AC) = 0.2 x 2, v(BC) = 0, v(ABC) = 0.2 x min(4, 2)
    values = game.all_values_eur()  # bit 0: A, bit 1: B, bit 2: C
    assert values == pytest.approx([0, 0, 0, 0.2, 0, 0.4, 0, 0.4])
    # Shapley: A joins last in 3 of 6 orders (0.4 each), after B alone once (0.2)
    assert allocate_eur(game, "shapley") == pytest.approx([1.4 / 6, 0.2 / 6, 0.8 / 6])
    # the community imports on balance: exporters are short, the marginal price is the retail
    assert allocate_eur(game, "marginal") == pytest.approx([0.4, 0.0, 0.0])
    # mid-market: half to A, half to the buyers pro rata (1:3)
    assert allocate_eur(game, "mid-market") == pytest.approx([0.2, 0.05, 0.15])
    # SDR = 2/4: sellers' price 0.3 x 0.1 / (0.2 x 0.5 + 0.1) = 0.15, buyers' 0.15 x 0.5 +
    # 0.3 x 0.5 = 0.225
    assert allocate_eur(game, "supply-demand-ratio") == pytest.approx(
        [2 * (0.15 - SELL), 1 * (BUY - 0.225), 3 * (BUY - 0.225)])
    # bill sharing: the buyers share the grid cost 0.3 x 2 over 4 kWh; A gets no export revenue
    assert allocate_eur(game, "bill-sharing") == pytest.approx(
        [-2 * SELL, 1 * (BUY - 0.15), 3 * (BUY - 0.15)])
    # A and C leave mid-market: 0.4 together against 0.35 (and Shapley: 0.4 against 0.367)
    excess, _, members, proven = core_excess(game, allocate_eur(game, "mid-market"))
    assert proven and excess == pytest.approx(0.05) and list(members) == [True, False, True]
    assert core_excess(game, allocate_eur(game, "marginal"))[0] == pytest.approx(0, abs=1e-9)
    assert core_excess(game, allocate_eur(game, "shapley"))[0] == pytest.approx(0.4 - 2.2 / 6)


def _direct_value(game: SharingGame):
    kappa = game.saving_eur_per_kwh

    @cache
    def v(coalition: frozenset) -> float:
        members = sorted(coalition)
        total = 0.0
        for t in range(len(kappa)):
            imp = sum(game.import_kwh[t, i] for i in members)
            exp = sum(game.export_kwh[t, i] for i in members)
            total += kappa[t] * min(imp, exp)
        return total

    return v


def _random_game(seed: int, n: int, n_t: int = 3, local: float = 0.02) -> SharingGame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, (n_t, n)) * (rng.random((n_t, n)) < 0.8)
    buy = rng.uniform(0.25, 0.35, n_t)
    return SharingGame.from_positions(x, 0.25, buy, rng.uniform(0.05, 0.1, n_t), local)


@pytest.mark.parametrize("n", [2, 4, 6, 8])
def test_the_shapley_value_is_the_mean_over_every_order_of_joining(n):
    game = _random_game(n, n)
    v = _direct_value(game)
    total = np.zeros(n)
    orders = list(permutations(range(n)))
    for order in orders:
        before: frozenset = frozenset()
        for i in order:
            total[i] += v(before | {i}) - v(before)
            before = before | {i}
    phi, stderr = shapley_eur(game)
    assert phi == pytest.approx(total / len(orders), abs=1e-12)
    assert (stderr == 0).all() and phi.sum() == pytest.approx(v(frozenset(range(n))))


@pytest.mark.parametrize("n", [3, 5, 8])
def test_the_core_check_finds_the_coalition_enumeration_finds(n):
    game = _random_game(100 + n, n)
    v = _direct_value(game)
    for rule in RULES[1:]:
        x = allocate_eur(game, rule)
        worst = max(v(frozenset(c)) - x[list(c)].sum()
                    for k in range(1, n + 1) for c in combinations(range(n), k))
        excess, bound, members, proven = core_excess(game, x)
        assert proven and bound == excess
        assert excess == pytest.approx(max(worst, 0.0), abs=1e-9), rule
        if excess > 1e-9:
            assert v(frozenset(np.flatnonzero(members))) - x[members].sum() == pytest.approx(
                excess, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 7), n_t=st.integers(1, 5),
       local=st.floats(0.0, 0.3))
def test_every_rule_hands_out_the_whole_saving_and_marginal_prices_are_in_the_core(
        seed, n, n_t, local):
    game = _random_game(seed, n, n_t, local)
    whole = game.value_eur(np.ones(n, bool))
    price = np.random.default_rng(seed).uniform(SELL, BUY, n_t)
    for rule in RULES:
        x = allocate_eur(game, rule, market_price_eur_per_kwh=price)
        assert x.sum() == pytest.approx(whole, abs=1e-9), rule
    # the competitive (marginal) price of the pooled positions: in the core of a market game
    assert core_excess(game, allocate_eur(game, "marginal"))[0] <= 1e-9
    # the price-based rules with a price between the feed-in and the retail price leave no one
    # worse off than alone
    for rule in ("marginal", "mid-market", "supply-demand-ratio"):
        assert (allocate_eur(game, rule) >= -1e-12).all(), rule


def test_the_sampled_shapley_value_is_within_its_error_of_the_exact_one():
    game = _random_game(7, 12, n_t=6)
    exact, _ = shapley_eur(game)
    sampled, stderr = shapley_eur(game, samples=3_000, rng=np.random.default_rng(1),
                                  exact_up_to=0)
    assert sampled.sum() == pytest.approx(exact.sum(), abs=1e-9)  # each order hands out v(N)
    assert (stderr > 0).any()
    assert np.abs(sampled - exact).max() <= 5 * stderr.max() + 1e-12


def test_compare_rules_reports_who_is_better_off_and_whether_the_core_holds():
    kpis, shares = compare_rules(_hand_game(), market_price_eur_per_kwh=[0.25])
    assert list(kpis.index) == list(RULES)
    assert kpis.saving_eur.to_numpy() == pytest.approx(0.4)
    assert kpis.loc["marginal", "in_core"] and not kpis.loc["mid-market", "in_core"]
    assert kpis.loc["mid-market", "blocking_members"] == "A,C"
    assert kpis.loc["bill-sharing", "share_worse_off"] == pytest.approx(1 / 3)
    assert kpis.loc["marginal", "share_better_off"] == pytest.approx(1 / 3)
    # the market price 0.25: A gets 0.15 per shared kWh of the 0.2 a kWh saves
    assert shares.loc["A", "market"] == pytest.approx(2 * 0.15)
    assert (kpis.gini.dropna() >= 0).all()


@pytest.mark.parametrize("change, field", [
    ({"net_import_kw": [[np.nan, 1.0]]}, "net_import_kw"),
    ({"dt_h": 0.0}, "dt_h"),
    ({"sell_eur_per_kwh": 0.5}, "sell_eur_per_kwh"),
    ({"buy_eur_per_kwh": np.inf}, "buy_eur_per_kwh"),
])
def test_bad_input_names_the_field(change, field):
    args = {"net_import_kw": [[-1.0, 1.0]], "dt_h": 1.0, "buy_eur_per_kwh": BUY,
            "sell_eur_per_kwh": SELL} | change
    with pytest.raises(InputError, match=field):
        SharingGame.from_positions(**args)
    with pytest.raises(InputError, match="rule"):
        allocate_eur(_hand_game(), "equal")
