"""A small vectorised linear-programming layer on HiGHS.

Variables and constraints are created in blocks (numpy index arrays of any shape) and coefficients
are added as whole arrays, so a model over 96 (or 35,136) intervals is built with a handful of
numpy operations; the matrix goes to HiGHS (Huangfu & Hall, "Parallelizing the dual revised
simplex method", Math. Prog. Comp. 10, 2018) in compressed-column form through ``highspy``.

Duals follow HiGHS: ``row_dual[i]`` is the change of the optimal objective per unit increase of
row i's active bound; ``col_dual[j]`` is variable j's reduced cost (``c - A' row_dual``).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

from typing import Any

import numpy as np
import scipy.sparse as sp

INF = np.inf


@contextlib.contextmanager
def _quiet_stdout():
    """Silence the C-level stdout (HiGHS prints a banner when its first instance is created)."""
    try:
        fd = os.dup(1)
    except OSError:  # no real stdout (e.g. some test runners)
        yield
        return
    with open(os.devnull, "w") as devnull:
        try:
            os.dup2(devnull.fileno(), 1)
            yield
        finally:
            os.dup2(fd, 1)
            os.close(fd)


def new_highs():
    """A silent ``highspy.Highs`` instance."""
    import highspy

    with _quiet_stdout():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


@dataclass(frozen=True, eq=False)
class LPSolution:
    """Optimal primal values, row duals, objective, and solver info."""

    x: np.ndarray
    row_dual: np.ndarray
    col_dual: np.ndarray
    objective: float
    status: str
    seconds: float
    basis: object | None = None  # HiGHS basis of an LP (a warm start for the same-shaped model)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        """Values of a block of variables (index array from :meth:`LinearProgram.var`)."""
        return self.x[index]


class LinearProgram:
    """Build ``min c'x  s.t.  row_lower <= A x <= row_upper,  lb <= x <= ub`` blockwise."""

    def __init__(self) -> None:
        self.n_var = 0
        self.n_row = 0
        self._cost: list[np.ndarray] = []
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._integer: list[np.ndarray] = []
        self._row_lo: list[np.ndarray] = []
        self._row_hi: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []

    def var(self, shape, lb=0.0, ub=INF, cost=0.0, integer: bool = False) -> np.ndarray:
        """Add a block of variables; returns their indices with the given shape."""
        shape = (shape,) if np.isscalar(shape) else tuple(shape)
        n = int(np.prod(shape))
        index = np.arange(self.n_var, self.n_var + n).reshape(shape)
        self.n_var += n
        self._cost.append(np.broadcast_to(np.asarray(cost, float), shape).ravel())
        self._lb.append(np.broadcast_to(np.asarray(lb, float), shape).ravel())
        self._ub.append(np.broadcast_to(np.asarray(ub, float), shape).ravel())
        self._integer.append(np.full(n, integer))
        return index

    def rows(self, shape, lower=-INF, upper=INF) -> np.ndarray:
        """Add a block of constraint rows; returns their indices with the given shape."""
        shape = (shape,) if np.isscalar(shape) else tuple(shape)
        n = int(np.prod(shape))
        index = np.arange(self.n_row, self.n_row + n).reshape(shape)
        self.n_row += n
        self._row_lo.append(np.broadcast_to(np.asarray(lower, float), shape).ravel())
        self._row_hi.append(np.broadcast_to(np.asarray(upper, float), shape).ravel())
        return index

    def set_row_bounds(self, rows: np.ndarray, lower=-INF, upper=INF) -> None:
        """Replace the bounds of existing rows (arrays broadcast against ``rows``)."""
        lo, hi = np.concatenate(self._row_lo), np.concatenate(self._row_hi)
        rows = np.asarray(rows)
        lo[rows] = np.broadcast_to(np.asarray(lower, float), rows.shape)
        hi[rows] = np.broadcast_to(np.asarray(upper, float), rows.shape)
        self._row_lo, self._row_hi = [lo], [hi]

    def fix(self, cols: np.ndarray, values) -> None:
        """Fix variables to values (bounds lb = ub, no longer integer): e.g. a MILP's binary
        choices, to re-solve the LP for its duals."""
        lb, ub = np.concatenate(self._lb), np.concatenate(self._ub)
        integer = np.concatenate(self._integer)
        cols = np.asarray(cols)
        lb[cols] = ub[cols] = np.broadcast_to(np.asarray(values, float), cols.shape)
        integer[cols] = False
        self._lb, self._ub, self._integer = [lb], [ub], [integer]

    def coef(self, rows, cols, values=1.0) -> None:
        """Add coefficients A[rows, cols] += values (arrays broadcast against each other)."""
        rows, cols, values = np.broadcast_arrays(np.asarray(rows), np.asarray(cols),
                                                 np.asarray(values, float))
        keep = values != 0
        self._rows.append(rows[keep].ravel())
        self._cols.append(cols[keep].ravel())
        self._vals.append(values[keep].ravel())

    def matrix(self) -> sp.csc_matrix:
        def cat(parts, dtype):
            return np.concatenate(parts) if parts else np.array([], dtype=dtype)

        return sp.csc_matrix(
            (cat(self._vals, float), (cat(self._rows, np.int64), cat(self._cols, np.int64))),
            shape=(self.n_row, self.n_var),
        )

    def solve(self, time_limit_s: float | None = None, mip_rel_gap: float | None = None,
              warm_start: Any = None, solver: str | None = None) -> LPSolution:
        """Solve with HiGHS (simplex for LPs, branch-and-bound if integer variables exist).

        A MILP stopped by ``time_limit_s`` with a feasible solution reports status 'Feasible'.
        ``warm_start`` is the ``basis`` of an earlier solution; it is used if this is an LP with
        as many variables and rows (e.g. the same model with other coefficients), else ignored.
        ``solver`` chooses HiGHS's LP method (``simplex``, ``ipm``: interior point with
        crossover, faster on large block-structured LPs); HiGHS's choice by default.
        """
        import highspy

        h = new_highs()
        lp = highspy.HighsLp()
        a = self.matrix()
        a.sum_duplicates()
        lp.num_col_, lp.num_row_ = self.n_var, self.n_row
        lp.col_cost_ = np.concatenate(self._cost)
        lp.col_lower_ = np.concatenate(self._lb)
        lp.col_upper_ = np.concatenate(self._ub)
        lp.row_lower_ = np.concatenate(self._row_lo) if self._row_lo else np.array([])
        lp.row_upper_ = np.concatenate(self._row_hi) if self._row_hi else np.array([])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr
        lp.a_matrix_.index_ = a.indices
        lp.a_matrix_.value_ = a.data
        integer = np.concatenate(self._integer)
        if integer.any():
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in integer]
        if time_limit_s is not None:
            h.setOptionValue("time_limit", float(time_limit_s))
        if mip_rel_gap is not None:
            h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        if solver is not None:  # HiGHS's "simplex", "ipm" or "pdlp"
            h.setOptionValue("solver", solver)
        t0 = time.perf_counter()
        h.passModel(lp)
        if (warm_start is not None and warm_start.valid and not integer.any()
                and len(warm_start.col_status) == self.n_var
                and len(warm_start.row_status) == self.n_row):
            h.setBasis(warm_start)
        h.run()
        seconds = time.perf_counter() - t0
        status = h.modelStatusToString(h.getModelStatus())
        solution = h.getSolution()
        if integer.any() and status == "Time limit reached" and solution.value_valid:
            status = "Feasible"
        x = np.asarray(solution.col_value, float) if len(solution.col_value) else np.full(
            self.n_var, np.nan)
        dual = np.asarray(solution.row_dual, float) if len(solution.row_dual) else np.full(
            self.n_row, np.nan)
        col_dual = np.asarray(solution.col_dual, float) if len(solution.col_dual) else np.full(
            self.n_var, np.nan)
        objective = float(h.getInfo().objective_function_value)
        return LPSolution(x=x, row_dual=dual, col_dual=col_dual, objective=objective,
                          status=status, seconds=seconds,
                          basis=None if integer.any() else h.getBasis())
