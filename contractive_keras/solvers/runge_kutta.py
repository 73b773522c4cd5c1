"""Explicit Runge-Kutta schemes given by a Butcher tableau.

A scheme is a small object that states its ``order`` and ``stages`` and
knows how to take one ``step``; it knows nothing about the integrate loop
(:mod:`contractive_keras.solvers.fixed_step`) nor about how gradients are
computed (:mod:`contractive_keras.solvers.gradients`).

For a tableau (a, b, c) with s stages, one step of size h from (t, y) is
(Hairer, Norsett & Wanner, *Solving ODEs I*, section II.1)::

    k_i = f(t + c_i h, y + h sum_{j<i} a_ij k_j),   i = 1..s
    y_next = y + h sum_i b_i k_i

States may be any nested structure of tensors (``keras.tree``); every
leaf moves with the same scalar time and step size.  Written with
``keras.ops``: the schemes run on every Keras backend.
"""

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge-Kutta method.

    Attributes:
        a: lower-triangular stage matrix as a tuple of rows; row i has i
            entries (the coefficients of k_1..k_i in stage i+1).
        b: weights of the stages in the step (sum to 1).
        c: stage times as fractions of the step (c_i = sum_j a_ij).
        b_error: embedded pairs only: b minus the weights of the embedded
            lower-order method, so that h sum_i b_error_i k_i estimates the
            local error.
    """

    a: tuple
    b: tuple
    c: tuple
    b_error: tuple = None

    def __post_init__(self):
        stages = len(self.b)
        if len(self.c) != stages or len(self.a) != stages - 1:
            raise ValueError(
                f"Butcher tableau with {stages} weights needs {stages} stage "
                f"times and {stages - 1} rows of a; got {len(self.c)} and "
                f"{len(self.a)}.")
        for i, row in enumerate(self.a):
            if len(row) != i + 1:
                raise ValueError(
                    f"Row {i} of an explicit tableau has {i + 1} entries, "
                    f"got {len(row)}: {row}.")
            if abs(sum(row) - self.c[i + 1]) > 1e-12:
                raise ValueError(
                    f"Row {i} of a sums to {sum(row)}, but c[{i + 1}] = "
                    f"{self.c[i + 1]}.")
        if abs(sum(self.b) - 1.0) > 1e-12:
            raise ValueError(f"Weights b must sum to 1, got {sum(self.b)}.")
        if self.b_error is not None and (
                len(self.b_error) != stages
                or abs(sum(self.b_error)) > 1e-12):
            raise ValueError(
                f"b_error (b minus the embedded weights) needs {stages} "
                f"entries summing to 0, got {self.b_error}.")

    @property
    def stages(self):
        return len(self.b)


def _weighted_sum(y, scale, coefficients, ks):
    """y + scale * sum_j coefficients[j] * ks[j] over nested structures.

    Zero coefficients are skipped and equal ones grouped, so that classic
    tableaus build the same small graph one would write by hand.
    """
    groups = {}
    for coefficient, k in zip(coefficients, ks):
        if coefficient != 0.0:
            groups.setdefault(coefficient, []).append(k)
    if not groups:
        return y

    def leaf(y_leaf, *k_leaves):
        total = y_leaf
        start = 0
        for coefficient, members in groups.items():
            parts = k_leaves[start:start + len(members)]
            start += len(members)
            summed = parts[0]
            for part in parts[1:]:
                summed = summed + part
            factor = scale * coefficient
            if hasattr(factor, "dtype") and (keras.backend.standardize_dtype(factor.dtype)
                                             != keras.backend.standardize_dtype(total.dtype)):
                factor = keras.ops.cast(factor, total.dtype)
            total = total + factor * summed
        return total

    ordered = [k for members in groups.values() for k in members]
    return keras.tree.map_structure(leaf, y, *ordered)


class ExplicitRungeKutta:
    """Base class: one step of an explicit Runge-Kutta scheme.

    Subclasses set ``tableau``, ``order`` and ``name``; the step follows the
    formulas in the module docstring.
    """

    tableau: ButcherTableau = None
    order: int = None
    name: str = None

    @property
    def stages(self):
        """Number of evaluations of the vector field per step."""
        return self.tableau.stages

    @property
    def propagating_stages(self):
        """The stages ``step`` evaluates: up to the last with a weight b_i != 0.

        A first-same-as-last pair (b_s = 0) skips its last stage, which only
        serves as the next step's first.
        """
        return 1 + max(i for i, weight in enumerate(self.tableau.b) if weight != 0.0)

    def step(self, fn, t, y, h, first_derivative=None):
        """Advances ``y`` from time ``t`` by one step of size ``h``.

        Args:
            fn: vector field ``fn(t, y)`` returning a structure like ``y``
                (any extra argument such as the step index is already bound).
            t: scalar tensor, the time at the start of the step.
            y: nested structure of tensors, the state at ``t``.
            h: scalar tensor (same dtype as ``t``), the step size.
            first_derivative: optional ``fn(t, y)``, already computed.

        Returns:
            The state at ``t + h``, same structure, shapes and dtypes as ``y``.
        """
        tableau = self.tableau
        ks = [fn(t, y) if first_derivative is None else first_derivative]
        for i in range(1, self.propagating_stages):
            y_stage = _weighted_sum(y, h, tableau.a[i - 1], ks)
            ks.append(fn(t + tableau.c[i] * h, y_stage))
        return _weighted_sum(y, h, tableau.b, ks)

    def __repr__(self):
        return f"{type(self).__name__}()"


class EmbeddedRungeKutta(ExplicitRungeKutta):
    """Base class: an explicit Runge-Kutta pair with an error estimate.

    The last stage must be evaluated at the new state (first same as last,
    FSAL: c_s = 1 and row s of a equals b), so that it serves as the
    first stage of the next step. Subclasses set ``tableau`` (with
    ``b_error``), ``order`` (of the propagated solution) and ``name``.
    """

    def step_with_error(self, fn, t, y, h, first_derivative):
        """One step with local error estimate.

        Args:
            fn: vector field ``fn(t, y)``.
            t, y, h: as in :meth:`ExplicitRungeKutta.step`.
            first_derivative: ``fn(t, y)`` (the previous step's last stage).

        Returns:
            ``(y_next, f_next, error)``: the state at ``t + h``, ``fn`` at
            that state and time, and the local error estimate
            ``h sum_i b_error_i k_i`` (all structured like ``y``).
        """
        tableau = self.tableau
        ks = [first_derivative]
        for i in range(1, tableau.stages):
            y_stage = _weighted_sum(y, h, tableau.a[i - 1], ks)
            ks.append(fn(t + tableau.c[i] * h, y_stage))
        # FSAL: the last stage's state is the new state, its slope f_next.
        zeros = keras.tree.map_structure(keras.ops.zeros_like, y)
        error = _weighted_sum(zeros, h, tableau.b_error, ks)
        return y_stage, ks[-1], error
