"""EV charging and shiftable loads: energy within a window, one asset kind for both scenario types
``ev`` and ``flexible_load`` (see :mod:`lemgrid.assets.kinds`).

Each asset needs ``energy_kwh`` every day within its window (an EV from arrival to departure, a
washing machine between ``window_start`` and ``window_end``) at up to ``power_kw``; one row of the
table per asset and daily window (windows cut by the horizon or by a session boundary take the
share of the energy that their part of the window has).

- Business-as-usual: full power from the start of the window until the energy is drawn.
- Community LP: the power of every interval of every window, summing to the energy.
- Flexibility: up (draw less now, the energy is drawn later in the same window: rebound, at the
  first intervals with spare power) and down (draw more now, less later), within the window.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from lemgrid.assets.kinds import KindOffers, KindPlan, LPBlock, LPContext, _register_builtin
from lemgrid.assets.tables import EnergyWindows, daily_windows
from lemgrid.errors import InfeasibleError
from lemgrid.scenario.config import EVConfig, FlexibleLoadConfig, clock_hours


def charge_on_arrival(windows: EnergyWindows, n_intervals: int, dt_h: float) -> np.ndarray:
    """EVs and shiftable loads draw full power from the start of their window until done.

    Returns
    -------
    ndarray, shape (T, S)
        Power drawn by each window [kW].
    """
    out = np.zeros((n_intervals, len(windows)))
    for k in range(len(windows)):
        power = windows.power_kw[k]
        full, rest = divmod(windows.energy_kwh[k], power * dt_h)
        start = int(windows.start[k])
        stop = min(start + int(full), int(windows.stop[k]))
        out[start:stop, k] = power
        if rest > 1e-12 and stop < windows.stop[k]:
            out[stop, k] = rest / dt_h
    return out


def split_windows(windows: EnergyWindows, start: int, stop: int) -> EnergyWindows:
    """The parts of EV / shiftable-load windows inside [start, stop), relative to ``start``; a
    window cut by the boundary takes the share of its energy that its part of the window has."""
    lo = np.maximum(windows.start, start)
    hi = np.minimum(windows.stop, stop)
    keep = hi > lo
    share = (hi - lo) / np.maximum(windows.stop - windows.start, 1)
    return EnergyWindows(
        owner=windows.owner[keep], name=windows.name[keep], kind=windows.kind[keep],
        start=(lo - start)[keep], stop=(hi - start)[keep],
        energy_kwh=(windows.energy_kwh * share)[keep], power_kw=windows.power_kw[keep])


def _drawn(output_kw: np.ndarray, dt_h: float) -> np.ndarray:
    """Energy drawn by each window up to the end of each interval [kWh] (the kind's state)."""
    return np.cumsum(-output_kw, axis=0) * dt_h


class EnergyWindowKind:
    """EVs and shiftable loads (registered as ``energy_window``; types ``ev`` and
    ``flexible_load``)."""

    name: ClassVar[str] = "energy_window"
    types: ClassVar[tuple[str, ...]] = ("ev", "flexible_load")
    Config: ClassVar[type[BaseModel]] = EVConfig
    Configs: ClassVar[tuple[type[BaseModel], ...]] = (EVConfig, FlexibleLoadConfig)
    flex_price_eur_per_kwh: ClassVar[float] = 0.03
    #: Default utilisation prices per offer label [EUR/kWh].
    flex_prices_eur_per_kwh: ClassVar[dict[str, float]] = {"ev": 0.03, "flexible_load": 0.03}

    # -- scenario ------------------------------------------------------------------------------
    def build(self, config: EVConfig | FlexibleLoadConfig, owner: int, name: str, horizon,
              loc: tuple) -> list[dict]:
        from lemgrid.scenario.build import FieldError

        opening, closing = ((config.arrival, config.departure) if isinstance(config, EVConfig)
                            else (config.window_start, config.window_end))
        rows = []
        for start, stop, fraction in daily_windows(horizon.time_index, clock_hours(opening),
                                                   clock_hours(closing)):
            energy = config.energy_kwh * fraction
            if energy > config.power_kw * (stop - start) * horizon.dt_h + 1e-9:
                raise FieldError(
                    loc + ("energy_kwh",),
                    f"{config.type} {name!r}: {energy:.3g} kWh cannot be delivered at "
                    f"{config.power_kw} kW between {opening} and {closing} "
                    f"(at most {config.power_kw * (stop - start) * horizon.dt_h:.3g} kWh)")
            rows.append(dict(owner=owner, name=name, kind=config.type, start=start, stop=stop,
                             energy_kwh=energy, power_kw=config.power_kw))
        return rows

    def table(self, rows: list[dict]) -> EnergyWindows:
        if not rows:
            return EnergyWindows.empty()
        return EnergyWindows(**{k: np.array([r[k] for r in rows]) for k in rows[0]})

    def window(self, table: EnergyWindows, start: int, stop: int) -> EnergyWindows:
        return split_windows(table, start, stop)

    def carry(self, table: EnergyWindows, plan: KindPlan) -> EnergyWindows:
        return table  # a window's energy is set by the scenario, not by the day before

    # -- dispatch ------------------------------------------------------------------------------
    def rule_dispatch(self, table: EnergyWindows, net_kw: np.ndarray, dt_h: float) -> KindPlan:
        output = -charge_on_arrival(table, net_kw.shape[0], dt_h)
        return KindPlan(owner=table.owner, output_kw=output, state=_drawn(output, dt_h))

    def lp_block(self, lp, table: EnergyWindows, dt_h: float, final_state: np.ndarray | None,
                 context: LPContext) -> LPBlock:
        s, n_t = table, context.n_intervals
        need = s.energy_kwh > s.power_kw * (s.stop - s.start) * dt_h + 1e-9
        if need.any():
            k = int(np.flatnonzero(need)[0])
            raise InfeasibleError(
                f"{s.kind[k]} {str(s.name[k])!r} of {str(context.ids[s.owner[k]])!r} cannot take "
                f"{s.energy_kwh[k]:.3g} kWh at {s.power_kw[k]} kW within its window")
        length = (s.stop - s.start).astype(int)
        which = np.repeat(np.arange(len(s)), length)  # window of each variable
        t = (np.concatenate([np.arange(a, z) for a, z in zip(s.start, s.stop, strict=True)])
             if len(s) else np.array([], dtype=int))
        p = lp.var(len(t), ub=s.power_kw[which])

        def constrain() -> None:
            rows = lp.rows(len(s), lower=s.energy_kwh, upper=s.energy_kwh)
            lp.coef(rows[which], p, dt_h)

        def read(solution) -> KindPlan:
            schedule = np.zeros((n_t, len(s)))
            schedule[t, which] = solution[p]
            return KindPlan(owner=s.owner, output_kw=-schedule, state=_drawn(-schedule, dt_h))

        return LPBlock(draw=[(p, 1.0, (t, which))], read=read, constrain=constrain)

    # -- flexibility ---------------------------------------------------------------------------
    def offers(self, table: EnergyWindows, plan: KindPlan, intervals: np.ndarray, dt_h: float
               ) -> KindOffers:
        intervals = np.asarray(intervals, int)
        parts = []
        for k in range(len(table)):
            start, stop = int(table.start[k]), int(table.stop[k])
            kw = -plan.output_kw[:, k]
            power = table.power_kw[k]
            t = intervals[(intervals >= start) & (intervals < stop)]
            if not len(t):
                continue
            spare_after = np.array([(power - kw[tk + 1:stop]).clip(min=0).sum() for tk in t])
            drawn_after = np.array([kw[tk + 1:stop].sum() for tk in t])
            for direction, room in ((1, np.minimum(kw[t], spare_after)),
                                    (-1, np.minimum(power - kw[t], drawn_after))):
                keep = room > 1e-6
                m = int(keep.sum())
                parts.append((np.full(m, k), t[keep], np.full(m, direction), room[keep],
                              kw[t][keep], np.full(m, str(table.kind[k]))))
        if not parts:
            return KindOffers.empty()
        return KindOffers(*(np.concatenate([part[i] for part in parts]) for i in range(6)))

    def budgets(self, table: EnergyWindows, plan: KindPlan, offers: KindOffers, dt_h: float
                ) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Per window: the deferrals (up) at most its spare power later in the window, the
        advances (down) at most the energy it still draws."""
        rows = []
        for k in range(len(table)):
            mine = np.flatnonzero(offers.asset == k)
            if not len(mine):
                continue
            start, stop = int(table.start[k]), int(table.stop[k])
            kw = -plan.output_kw[start:stop, k]
            for direction, bound in ((1, (table.power_kw[k] - kw).clip(min=0).sum()),
                                     (-1, kw.sum())):
                which = mine[offers.direction[mine] == direction]
                rows.append((which, np.ones(len(which)), float(bound)))
        return rows

    def apply(self, table: EnergyWindows, plan: KindPlan, asset: np.ndarray,
              interval: np.ndarray, delta_kw: np.ndarray, dt_h: float) -> KindPlan:
        """Draw ``delta_kw`` less (up) or more (down) now and the same energy more or less at the
        first later intervals of the window that can."""
        plan = plan.copy()
        window_kw = -plan.output_kw
        for k, t, delta in zip(asset.tolist(), interval.tolist(), delta_kw, strict=True):
            stop = int(table.stop[k])
            power = table.power_kw[k]
            window_kw[t, k] -= delta  # up: draw less now
            energy = delta  # kW-intervals to move to (up) or from (down) later intervals
            for tk in range(t + 1, stop):
                if abs(energy) < 1e-12:
                    break
                room = power - window_kw[tk, k] if energy > 0 else window_kw[tk, k]
                move = min(abs(energy), room)
                window_kw[tk, k] += np.sign(energy) * move
                energy -= np.sign(energy) * move
        plan.output_kw = -window_kw
        plan.state = _drawn(plan.output_kw, dt_h)
        return plan


ENERGY_WINDOW = _register_builtin(EnergyWindowKind())
