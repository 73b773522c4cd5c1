"""ODEBlock: the base of every ODE layer (one ``SolverSpec``, the description method)."""

import keras

from contractive_keras.solvers.serialization import layer_solver
from contractive_keras.solvers.spec import SolverSpec

# Keys of the integration settings that configs written before ``solver=``
# took a ``SolverSpec`` store beside ``solver`` (``ODEBlock.upgrade_config``).
SOLVER_ARGUMENTS = ("steps", "step_size", "t1", "gradient", "rtol", "atol")


class ODEBlock(keras.layers.Layer):
    """A Keras layer that integrates an ODE with one ``solvers.SolverSpec``.

    Backends: the ODE layers are written with ``keras.ops`` and run under
    Keras's TensorFlow, JAX and PyTorch backends with the fixed-step methods
    ("euler", "midpoint", "rk4") and gradient "backprop" (and the other
    gradients and "dopri5" where ``contractive_keras.solvers`` supports them
    on that backend); tfp's "tfp_dopri5" and "bdf" are TensorFlow-only and
    refuse in one line elsewhere (``backend.require_tensorflow``).

    Subclasses set ``solver_defaults`` (the method and time grid used when the
    caller gives none or only a method name) and describe their vector field
    to the certificates through ``jacobian_structure()``; they never certify
    themselves (``contractive_keras.certify`` does).

    Args:
        solver: None (the layer's ``solver_defaults``), a method name
            completed by the layer's defaults, or a ``solvers.SolverSpec``
            holding every integration setting (method, steps, step_size or
            t1, gradient, rtol, atol).  Names: "euler", "midpoint", "rk4"
            (fixed step, this package's loop); "dopri5" is this package's
            Dormand-Prince pair (``solvers.Dopri5``: XLA-compilable, with a
            gradient under XLA); "tfp_dopri5" and "bdf" are tfp's
            ``DormandPrince`` and ``BDF`` (not XLA-compilable), as are
            ``tfp.math.ode.Solver`` instances.  The settings are not separate
            arguments: ``steps=``, ``t1=``, ... are refused (configs saved
            with them still load, see ``upgrade_config``).
        **kwargs: Keras layer arguments (name, dtype, ...).

    Example:

    >>> from contractive_keras.solvers import SolverSpec
    >>> from contractive_keras.layers import ResNetODE
    >>> layer = ResNetODE(SolverSpec("rk4", steps=4, t1=1.0))
    >>> layer.steps, layer.step_size
    (4, 0.25)
    """

    solver_defaults = dict(method="euler", steps=4, step_size=0.5)
    allow_custom_schemes = False
    # Old argument name -> its name now; read only from saved configs.
    legacy_names = {}

    def __init__(self, solver=None, **kwargs):
        self._refuse_old_arguments(solver, kwargs)
        super().__init__(**kwargs)
        self.solver_spec = SolverSpec.from_arguments(
            solver, defaults=self.solver_defaults,
            allow_custom_schemes=self.allow_custom_schemes)
        if not self.allow_custom_schemes:   # a spec may have been made with them allowed
            layer_solver(self.solver_spec.method, allow_custom_schemes=False)

    def _refuse_old_arguments(self, solver, kwargs):
        """TypeError for the loose solver settings and the old argument names."""
        cls = type(self).__name__
        loose = [k for k in SOLVER_ARGUMENTS if k in kwargs]
        if loose:
            given = ", ".join(f"{k}={kwargs[k]!r}" for k in loose)
            raise TypeError(
                f"{cls} takes its integration settings only through solver=: got {given}; "
                f"pass solver=SolverSpec(method, steps=..., step_size=... or t1=..., "
                f"gradient=..., rtol=..., atol=...) (contractive_keras.solvers.SolverSpec).")
        old = [k for k in self.legacy_names if k in kwargs]
        if old:
            renamed = ", ".join(f"{k} -> {self.legacy_names[k]}" for k in old)
            raise TypeError(f"{cls}: renamed arguments: {renamed}.")
        if isinstance(solver, (bool, int, float)) or isinstance(solver, keras.layers.Layer):
            raise TypeError(
                f"{cls}: the only positional argument is solver (a method name or "
                f"solver=SolverSpec(method, steps=..., ...)), got {solver!r}.")

    @classmethod
    def upgrade_config(cls, config):
        """A config of any version as this version's constructor arguments.

        Configs saved before ``solver=`` took a ``SolverSpec`` hold the
        integration settings as loose keys (``steps``, ``step_size``, ``t1``,
        ``gradient``, ``rtol``, ``atol``) beside a method name: they become
        the ``SolverSpec`` the old constructor built from them (the same
        defaults).  Old argument names (``legacy_names``) take their new
        names; a config giving both with different values is refused.
        """
        config = dict(config)
        loose = {k: config.pop(k) for k in SOLVER_ARGUMENTS if k in config}
        loose = {k: v for k, v in loose.items() if v is not None}
        solver = config.get("solver")
        if loose or not (isinstance(solver, dict) and solver.get("class_name") == "SolverSpec"):
            spec = SolverSpec.from_arguments(
                solver, **loose, defaults=cls.solver_defaults,
                allow_custom_schemes=cls.allow_custom_schemes)
            config["solver"] = spec.get_config()
        for old, new in cls.legacy_names.items():
            if old not in config:
                continue
            value = config.pop(old)
            if config.get(new) is None:
                config[new] = value
            elif value is not None and value != config[new]:
                raise ValueError(f"{cls.__name__} config: {new}={config[new]!r} and its old "
                                 f"name {old}={value!r} differ.")
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**cls.upgrade_config(config))

    # -- the integration settings, read from the spec --------------------------
    @property
    def solver(self):
        """The method: a lower-case name or a solver instance."""
        return self.solver_spec.method

    @property
    def fixed_step(self):
        return self.solver_spec.fixed_step

    @property
    def steps(self):
        return self.solver_spec.steps

    @property
    def step_size(self):
        """h, the step of the fixed-step scheme."""
        return self.solver_spec.step_size

    @property
    def t1(self):
        """T, the final time."""
        return self.solver_spec.t1

    @property
    def gradient(self):
        return self.solver_spec.gradient

    @property
    def rtol(self):
        return self.solver_spec.rtol

    @property
    def atol(self):
        return self.solver_spec.atol

    # -- outputs -------------------------------------------------------------
    return_trajectory = False

    def compute_output_shape(self, input_shape):
        """The input shape, or (batch, N + 1, ...) for a trajectory output."""
        input_shape = tuple(input_shape)
        if self.return_trajectory:
            return (input_shape[0], self.steps + 1) + input_shape[1:]
        return input_shape

    @staticmethod
    def batch_major(trajectory):
        """(N + 1, batch, ...) states at the grid times -> (batch, N + 1, ...)."""
        rank = len(trajectory.shape)
        return keras.ops.transpose(trajectory, [1, 0] + list(range(2, rank)))

    # -- description ---------------------------------------------------------
    def jacobian_structure(self):
        """The field's Jacobian structure (``bounds.JacobianStructure``) for certificates.

        At any state of step k the Jacobian of the vector field is
        offset[k] + left[k] diag(s) right[k]^T with the activation slopes s in
        an interval; with the scheme, step size and steps, this is all a
        certificate of the layer needs.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not describe its Jacobian structure.")

    def get_config(self):
        config = super().get_config()
        config["solver"] = self.solver_spec.get_config()
        return config
