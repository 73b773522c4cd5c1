"""ODE solvers with one call shape: fixed-step Runge-Kutta and tfp adaptive.

Entry points:

* :func:`odeint` -- ``odeint(fn, y0, t1, *, t0=0.0, method="rk4", steps=None,
  step_size=None, rtol=1e-6, atol=1e-6, gradient="backprop", times=None,
  with_step_index=False, unroll="auto")`` returns y(t1) (or the states at
  ``times``);
* :func:`solve` -- same arguments, returns a :class:`Solution` with ``ys``,
  ``ts`` and ``stats`` (numbers of function evaluations and steps).

Pieces (diffrax style, each in its own module): the schemes
:class:`Euler`, :class:`Midpoint`, :class:`RK4` (Butcher tableaus,
``runge_kutta.py``); the fixed-step loop (``fixed_step.py``); the gradient
methods :class:`Backprop`, :class:`Checkpoint`, :class:`Adjoint`
(``gradients.py``); the adapters for ``tfp.math.ode.DormandPrince`` and
``BDF`` (``adaptive.py``); this package's own adaptive :class:`Dopri5`
(``dopri5.py``) with its step-size controller (``step_size_control.py``)
and loop (``adaptive_loop.py``); :func:`serialize` / :func:`deserialize`
give a solver's config value in a layer's ``get_config``
(``serialization.py``); :class:`SolverSpec` holds everything an ODE layer
integrates with (scheme, time grid, gradient method, tolerances; ``spec.py``); :func:`write_summaries` puts solver
statistics into TensorBoard (``statistics.py``).

Backends (``KERAS_BACKEND``): the schemes, the fixed-step loop with
gradient "backprop" or "checkpoint", and "dopri5" with "backprop" are
written with ``keras.ops`` and run on TensorFlow, JAX and PyTorch; what
differs by backend (loops with a gradient, checkpointing, static values)
is in ``dispatch.py``, Dopri5's loop per backend in ``adaptive_loop.py``
(TensorFlow), ``embedded_loop.py`` (PyTorch) and ``embedded_jax.py`` (JAX,
a ``custom_vjp``).  TensorFlow only, refusing elsewhere in one line that
names the alternative: tfp's "tfp_dopri5" and "bdf" (``adaptive.py``),
gradient="adjoint" (``adjoint.py``) and :func:`write_summaries`.  This
package imports without TensorFlow; those modules import it when used.

Example:

>>> import keras
>>> from contractive_keras import solvers
>>> y1 = solvers.odeint(lambda t, y: -y, keras.ops.ones([2, 3]), 1.0, steps=8)
>>> tuple(y1.shape)
(2, 3)
"""

from contractive_keras.solvers.dopri5 import Dopri5
from contractive_keras.solvers.euler import Euler
from contractive_keras.solvers.gradients import Adjoint
from contractive_keras.solvers.gradients import Backprop
from contractive_keras.solvers.gradients import Checkpoint
from contractive_keras.solvers.interface import ADAPTIVE_METHODS
from contractive_keras.solvers.interface import FIXED_STEP_METHODS
from contractive_keras.solvers.interface import KNOWN_METHODS
from contractive_keras.solvers.interface import Solution
from contractive_keras.solvers.interface import get
from contractive_keras.solvers.interface import odeint
from contractive_keras.solvers.interface import solve
from contractive_keras.solvers.midpoint import Midpoint
from contractive_keras.solvers.rk4 import RK4
from contractive_keras.solvers.serialization import deserialize
from contractive_keras.solvers.serialization import serialize
from contractive_keras.solvers.spec import SolverSpec
from contractive_keras.solvers.statistics import write_summaries
from contractive_keras.solvers.runge_kutta import ButcherTableau
from contractive_keras.solvers.runge_kutta import EmbeddedRungeKutta
from contractive_keras.solvers.runge_kutta import ExplicitRungeKutta

__all__ = [
    "ADAPTIVE_METHODS",
    "Adjoint",
    "Backprop",
    "ButcherTableau",
    "Checkpoint",
    "Dopri5",
    "EmbeddedRungeKutta",
    "Euler",
    "ExplicitRungeKutta",
    "FIXED_STEP_METHODS",
    "KNOWN_METHODS",
    "Midpoint",
    "RK4",
    "Solution",
    "SolverSpec",
    "deserialize",
    "get",
    "odeint",
    "serialize",
    "solve",
    "write_summaries",
]
