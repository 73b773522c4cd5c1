"""Certificates for CH-NODE blocks and the models built from them.

Verify a model without trusting the training code (shared/DESIGN.md, "CH-NODE"):

* ``contraction_constants`` / ``contraction_rate``: c1, c2, alpha, gamma and
  rho of Theorems 1-2 for the weights a layer holds;
* ``discrete_certificate``: a certified Lipschitz bound of the *discrete*
  block that the layer really computes (fixed-step Euler / midpoint / RK4),
  and the largest step size for which that bound stays <= 1;
* ``worst_case_max_step_size``: the largest Euler step that is non-expansive
  for *every* field with the given c1, c2, gamma (canonical J: exact);
* ``bsm_norms``: ||d xi(T) / d xi(t_k)||_2 along the trajectory of given
  inputs (exact per-row Jacobians, or power iteration with JVP / VJP);
* ``lipschitz_bound`` and ``certified_radius`` for a chain model
  (normalisation, linear conv / dense, ODE blocks);
* ``summary``: a flat dict of floats for logging.

The NumPy-heavy entry points run with one BLAS thread
(``contractive_keras._blas``): their many small eigenproblems are far slower
multi-threaded.

Why the discrete certificate is exact in the slopes: at any state the
Jacobian of the field at step k is B(s) = A0 + U diag(s) V^T with
s = sigma'(...) in the box [0, S]^m.  One Euler step has Jacobian I + h B(s),
affine in s, and the spectral norm of an affine map is convex, so
max over the box = max over its 2^m vertices.  Hence
Lip(step k) <= max_{s in {0,S}^m} ||I + h B_k(s)||_2 (the exact worst case
over all slope patterns), and the block's Lipschitz constant is at most the
product over steps.  For explicit RK schemes with b >= 0, sum b = 1, the step
Jacobian is I + h sum_i b_i B(s_i) + (higher products), whose first part is
I + h B(sum_i b_i s_i) (again a point of the box) and whose remainder is at
most sum_{k>=2} c_k (h max_s ||B(s)||)^k with c_k = |b|^T |A|^{k-1} 1: a
valid, looser bound.

Findings (checked numerically in tests/test_certify.py):

* Theorem 1 holds, in the identity metric, and is sharp.  With M = beta (I + E),
  ||E||_2 <= alpha, x^T (J - gamma I) M x = -(gamma x + J x)^T M x
  <= -beta (gamma - alpha sqrt(gamma^2 + |J x|^2)) |x|^2, so
  mu_2((J - gamma I) M) <= -beta (gamma - alpha sqrt(gamma^2 + j2))
  (``log_norm_bound``), attained by a reflection-type M; Theorem 1's gamma
  makes this <= -rho / 2, which is Theorem 2.  At eps = 0 the bound is 0:
  no smaller gamma works for every admissible M.
* One Euler step of that ODE is non-expansive for every admissible field iff
  h <= (gamma - alpha V)(c1 + c2) / (V^2 c1 c2), V = sqrt(gamma^2 + j2)
  (``worst_case_max_step_size``, exact for the canonical J).  For the
  reference MNIST CH-NODE (L = 0.02 I, K ~ N(0, 1): c1 = 4e-4, c2 ~ 30,
  gamma ~ 135) that is ~1e-5; the weight-specific vertex certificate allows
  ~7e-5.  The reference uses h = 0.5: its certified block bound is ~1e12
  (depth 4, at initialization and after training), and the measured
  ||d xi(T) / d xi(0)||_2 at real MNIST pixels is ~4e5.  The reference
  discretization is therefore not contractive; its robustness does not come
  from Theorems 1-2.
* A fixed gamma with an eps margin bounds c2 / c1 through the projection, so
  one step size is certified for every weight training can reach
  (``invariant_max_step_size``): the honest way to keep the guarantee of the
  discrete network through training.
"""

import itertools
import math

import numpy as np
import tensorflow as tf

from contractive_keras._blas import single_threaded_blas

# Butcher tableaux (A, b) of the fixed-step schemes, for the RK bound only.
TABLEAUX = {
    "euler": (np.zeros((1, 1)), np.ones(1)),
    "midpoint": (np.array([[0.0, 0.0], [0.5, 0.0]]), np.array([0.0, 1.0])),
    "rk4": (np.array([[0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0],
                      [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]),
            np.array([1.0, 2.0, 2.0, 1.0]) / 6.0),
}

# Vertex enumeration up to 2^MAX_EXACT_UNITS slope patterns per step; wider
# layers use the (valid, looser) centre-radius bound.
MAX_EXACT_UNITS = 12
_F64_SLACK = 1e-12


# --- Theorems 1 and 2 --------------------------------------------------------

def theorem1_gamma(c1, c2, eps, j2=1.0):
    """Smallest gamma of Theorem 1: sqrt((alpha^2 + eps) j2 / (1 - alpha^2 - eps)).

    Raises:
        ValueError: if eps >= 1 - alpha^2 (no gamma satisfies Theorem 1).
    """
    gap = 4.0 * c1 * c2 / (c1 + c2) ** 2
    if not gap > eps:
        raise ValueError(
            f"eps={eps} must be < 1 - alpha^2 = {gap:.6g} (c1={c1:.6g}, c2={c2:.6g}).")
    return math.sqrt((1.0 - gap + eps) * j2 / (gap - eps))


def contraction_constants(layer):
    """c1, c2, alpha, beta, gamma, gamma_min, rho, ... of a CHNODE (dict of floats)."""
    return layer.theorem1_constants()


def contraction_rate(layer):
    """rho of Theorem 2: ||d xi(T) / d xi(T - t)||_2 <= exp(-rho t / 2)."""
    return contraction_constants(layer)["rho"]


def log_norm_bound(c1, c2, gamma, j2=1.0):
    """Upper bound on mu_2((J - gamma I) M) over all symmetric M with spectrum in [c1, c2].

    -beta (gamma - alpha sqrt(gamma^2 + j2)): exact worst case for the
    canonical J (shown in docs; tested), and <= -rho / 2 whenever gamma
    satisfies Theorem 1.
    """
    beta = 0.5 * (c1 + c2)
    alpha = (c2 - c1) / (c2 + c1)
    return -beta * (gamma - alpha * math.sqrt(gamma * gamma + j2))


def worst_case_max_step_size(c1, c2, gamma, j2=1.0):
    """Largest h with ||I + h (J - gamma I) M||_2 <= 1 for every admissible M.

    Admissible: symmetric M with spectrum in [c1, c2] (all CH-NODE fields with
    these bounds).  Writing y = M x, y ranges over the ball of centre beta x
    and radius alpha beta, and the condition reads
    h <= 2 v^T y / ((gamma^2 + j2) |y|^2) with v = gamma x + J x; the minimum
    of v^T y / |y|^2 over the ball is (gamma - alpha V) / (beta (1 - alpha^2)),
    V = sqrt(gamma^2 + j2).  Hence

        h_max = (gamma - alpha V) (c1 + c2) / (V^2 c1 c2),

    exact for the canonical J, a valid lower bound for any skew J.  Returns 0
    when gamma does not satisfy the (eps = 0) Theorem 1 inequality.
    """
    V = math.sqrt(gamma * gamma + j2)
    alpha = (c2 - c1) / (c2 + c1)
    margin = gamma - alpha * V
    if margin <= 0.0:
        return 0.0
    return margin * (c1 + c2) / (V * V * c1 * c2)


# --- discrete certificate ----------------------------------------------------

def _vertex_jacobians(A0, U, V, slope_bound):
    """All B_k(s) = A0_k + U_k diag(s) V_k^T, s in {0, S}^m: shape (W, 2^m, n, n)."""
    m = U.shape[-1]
    patterns = np.array(list(itertools.product((0.0, slope_bound), repeat=m)))
    return A0[:, None] + np.einsum("vi,kai,kbi->kvab", patterns, U, V)


def _spectral_norms(mats):
    """||X||_2 = sqrt(lambda_max(X^T X)) (eigvalsh: ~2x faster than an SVD here)."""
    gram = np.swapaxes(mats, -1, -2) @ mats
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[..., -1], 0.0)) * (1.0 + _F64_SLACK)


class _StepBounds:
    """h (W,) -> certified bounds (W,) on the Lipschitz constant of each step."""

    def __init__(self, A0, U, V, slope_bound, solver):
        self.n = A0.shape[-1]
        self.exact = U.shape[-1] <= MAX_EXACT_UNITS
        if self.exact:
            self.vertices = _vertex_jacobians(A0, U, V, slope_bound)
            self.field_norm = np.max(_spectral_norms(self.vertices), axis=1)
        else:
            self.centre = A0 + 0.5 * slope_bound * U @ np.swapaxes(V, -1, -2)
            self.radius = (0.5 * slope_bound * np.linalg.norm(U, 2, axis=(-2, -1))
                           * np.linalg.norm(V, 2, axis=(-2, -1)))
            self.field_norm = _spectral_norms(self.centre) + self.radius
        A, b = TABLEAUX[solver]
        self.coefficients = []
        power = np.ones(len(b))
        for _ in range(1, len(b)):
            power = np.abs(A) @ power
            self.coefficients.append(float(np.abs(b) @ power))

    def euler_part(self, h):
        eye = np.eye(self.n)
        if self.exact:
            return np.max(_spectral_norms(eye + h[:, None, None, None] * self.vertices), axis=1)
        return _spectral_norms(eye + h[:, None, None] * self.centre) + h * self.radius

    def __call__(self, h):
        h = np.asarray(h, np.float64)
        value = self.euler_part(h)
        x = h * self.field_norm
        for k, c in enumerate(self.coefficients, start=2):
            value = value + c * x ** k
        return value


def _largest_steps(bound, h_start, count):
    """Per step, the largest h >= 0 with bound(h) <= 1 (to 1e-6 relative).

    Each bound is convex in h with value 1 at h = 0, so its feasible set is
    an interval [0, h*]; a vectorized bisection returns certified (feasible)
    lower ends (inf where no h fails up to 1e12).
    """
    lo = np.zeros(count)
    hi = np.full(count, max(h_start, 1e-30))
    growing = np.ones(count, bool)
    while growing.any():
        ok = bound(hi) <= 1.0
        growing = ok & (hi < 1e12)
        lo = np.where(ok, hi, lo)
        hi = np.where(growing, 2.0 * hi, hi)
    unbounded = lo >= 1e12
    for _ in range(200):
        mid = np.where(lo > 0.0, 0.5 * (lo + hi), 1e-3 * hi)
        ok = bound(mid) <= 1.0
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
        done = ((lo > 0.0) & (hi - lo <= 1e-6 * hi)) | (hi < 1e-300) | unbounded
        if done.all():
            break
    return np.where(unbounded, math.inf, lo)


@single_threaded_blas
def step_lipschitz_bounds(A0, U, V, slope_bound, step_size, solver="euler"):
    """Certified per-step Lipschitz bounds of a fixed-step scheme.

    Args:
        A0, U, V: (W, n, n), (W, n, m), (W, n, m) arrays: Jacobian of the
            field at step k is A0[k] + U[k] diag(s) V[k]^T, s in [0, S]^m.
        slope_bound: S.
        step_size: h.
        solver: "euler", "midpoint" or "rk4".

    Returns:
        (bounds (W,), max_step_sizes (W,), exact): ``exact`` says the Euler
        part is the exact worst case over slope patterns (vertex enumeration).
    """
    if solver not in TABLEAUX:
        raise ValueError(f"no discrete certificate for solver={solver!r}; "
                         f"fixed-step schemes: {sorted(TABLEAUX)}.")
    A0, U, V = (np.asarray(x, np.float64) for x in (A0, U, V))
    bound = _StepBounds(A0, U, V, slope_bound, solver)
    count = A0.shape[0]
    values = bound(np.full(count, float(step_size)))
    return values, _largest_steps(bound, step_size, count), bound.exact


@single_threaded_blas
def discrete_certificate(layer):
    """Certified Lipschitz bound of the discrete block a layer computes.

    Returns a dict:
        per_step_bounds: certified bound of each step's Lipschitz constant;
        lipschitz_bound: their product over the N steps, an upper bound of
            ||d xi(T) / d xi(0)||_2 at every input (<= 1: certified
            non-expansive);
        max_step_size: the largest h for which every step's bound is <= 1
            (for a CHNODE with Euler steps, at least
            ``worst_case_max_step_size``, also certified);
        step_size, steps, solver;
        exact_in_slopes: the Euler part is the exact worst case over slope
            patterns (vertex enumeration) rather than a centre-radius bound;
        worst_case_max_step_size: (CHNODE) the largest Euler step that is
            non-expansive for every field with the same c1, c2, gamma;
        invariant_max_step_size: (CHNODE with a fixed gamma) the same for the
            largest c2 the projection allows: a step size certified for every
            weight that training can reach.
    """
    if layer.solver not in TABLEAUX:
        raise ValueError(
            f"{layer.name}: solver={layer.solver!r} is adaptive; the discrete "
            "certificate covers the fixed-step schemes only.")
    A0, U, V, S = layer.jacobian_parts()
    h = layer.step_size
    values, largest, exact = step_lipschitz_bounds(A0, U, V, S, h, layer.solver)
    if A0.shape[0] == 1:
        values = np.repeat(values, layer.steps)
    cert = {
        "per_step_bounds": values.tolist(),
        "lipschitz_bound": float(np.prod(values)),
        "max_step_size": float(np.min(largest)),
        "step_size": float(h),
        "steps": int(layer.steps),
        "solver": layer.solver,
        "exact_in_slopes": bool(exact),
    }
    if hasattr(layer, "theorem1_constants"):
        c = layer.theorem1_constants()
        worst_case = worst_case_max_step_size(c["c1"], c["c2"], c["gamma"], c["j2"])
        cert["worst_case_max_step_size"] = worst_case
        if layer.solver == "euler" and worst_case > cert["max_step_size"]:
            # Also certified (every field with these c1, c2, gamma): tighter
            # than the centre-radius bound of wide layers.
            cert["max_step_size"] = worst_case
            if h <= worst_case:
                values = np.minimum(values, 1.0)
                cert["per_step_bounds"] = values.tolist()
                cert["lipschitz_bound"] = float(np.prod(values))
        if layer.gamma != "auto":
            # The projection keeps c2 <= q_max c1 with gamma fixed: this step
            # size is certified for every weight training can reach.
            cert["invariant_max_step_size"] = worst_case_max_step_size(
                c["c1"], layer.max_ratio * c["c1"], c["gamma"], c["j2"])
    return cert


# --- backward sensitivity along a trajectory --------------------------------

def _one_step(layer, field, y, k):
    from contractive_keras.solvers import odeint

    def shifted(t, state, step):
        return field(t, state, step + k)

    state = odeint(shifted, layer.to_state(y), tf.constant(layer.step_size, y.dtype),
                   method=layer.solver, steps=1, with_step_index=True)
    return layer.from_state(state)


def _trajectory(layer, rows, field):
    step = tf.function(lambda y, k: _one_step(layer, field, y, k))
    states = [rows]
    for k in range(layer.steps):
        states.append(step(states[-1], tf.constant(k, tf.int32)))
    return states


def _step_jacobian_fn(layer, field):
    """A compiled (y, k) -> d step_k(y) / dy, per row: one trace for all k."""

    @tf.function
    def jacobian(y, k):
        with tf.GradientTape() as tape:
            tape.watch(y)
            out = _one_step(layer, field, y, k)
        return tape.batch_jacobian(out, y)

    return jacobian


def bsm_norms(layer, inputs, method="auto", iterations=20, per_row=False,
              power_steps=None):
    """Backward sensitivity norms ||d xi(T) / d xi(t_k)||_2, k = 0..N.

    The ODE acts on each vector of the last axis independently, so the
    Jacobian is block diagonal; the norm is computed per vector ("row") and
    the maximum over rows is returned (or all rows with ``per_row=True``).

    Args:
        layer: a built fixed-step ODE layer (CHNODE, HDNN, ResNetODE).
        inputs: states xi(0), shape (..., n).
        method: "exact" (per-row n x n Jacobians of every step, multiplied
            backwards), "power" (power iteration on Phi^T Phi with JVP / VJP:
            a lower estimate converging to the norm), or "auto" (exact for
            n <= 64).
        iterations: power iterations.
        power_steps: the k at which "power" estimates (default [0], the whole
            block; the other entries are NaN).
        per_row: return an array (N + 1, rows) instead of (N + 1,).

    Returns:
        numpy array; entry k is the norm for xi(t_k), t_k = k h, so the last
        entry is 1 and Theorem 2 predicts entry k <= exp(-rho (T - t_k) / 2).
    """
    n = layer.state_size
    if method == "auto":
        method = "exact" if n <= 64 else "power"
    rows = tf.reshape(tf.convert_to_tensor(inputs, layer.compute_dtype), [-1, n])
    field = layer.field_closure()
    states = _trajectory(layer, rows, field)
    N = layer.steps
    if method == "exact":
        phi = tf.eye(n, batch_shape=[tf.shape(rows)[0]], dtype=tf.float64)
        norms = [tf.ones([tf.shape(rows)[0]], tf.float64)]
        step_jacobian = _step_jacobian_fn(layer, field)
        for k in reversed(range(N)):
            jac = tf.cast(step_jacobian(states[k], tf.constant(k, tf.int32)), tf.float64)
            phi = tf.matmul(phi, jac)
            norms.append(tf.reduce_max(tf.linalg.svd(phi, compute_uv=False), axis=-1))
        result = np.stack([x.numpy() for x in reversed(norms)])
    elif method == "power":
        # Each k costs iterations x (N - k) steps forward and back: by default
        # only the whole block (k = 0) is estimated, the others are NaN.
        wanted = [0] if power_steps is None else list(power_steps)
        result = np.full((N + 1, rows.shape[0]), np.nan)
        result[N] = 1.0
        for k in wanted:
            @tf.function
            def normal_map(y, v, k=k):
                """(Phi v, Phi^T Phi v) for the block of steps k..N-1 at y."""
                with tf.GradientTape() as tape:
                    tape.watch(y)
                    with tf.autodiff.ForwardAccumulator(y, v) as acc:
                        out = y
                        for j in range(k, N):
                            out = _one_step(layer, field, out, j)
                    jv = acc.jvp(out)
                    inner = tf.reduce_sum(tf.stop_gradient(jv) * out)
                return jv, tape.gradient(inner, y)

            v = tf.random.stateless_normal(tf.shape(rows), seed=[k, 7], dtype=rows.dtype)
            sigma = None
            for _ in range(iterations):
                v = v / tf.norm(v, axis=-1, keepdims=True)
                jv, v = normal_map(states[k], v)
                # ||Phi v|| for a unit v: a lower bound that only grows.
                estimate = tf.norm(jv, axis=-1)
                sigma = estimate if sigma is None else tf.maximum(sigma, estimate)
            result[k] = sigma.numpy()
    else:
        raise ValueError(f"method must be 'auto', 'exact' or 'power', got {method!r}.")
    return result if per_row else result.max(axis=1)


# --- models ------------------------------------------------------------------

def _conv_norm(kernel, spatial):
    """Spectral norm bound of a stride-1 2-D convolution (circulant embedding).

    A zero-padded convolution on an H x W grid is a restriction of the
    circular convolution on an (H + kh - 1) x (W + kw - 1) torus, whose norm
    is exactly max over frequencies of ||K_hat(omega)||_2 (Sedghi et al.).
    """
    kh, kw, cin, cout = kernel.shape
    # "same" and "valid" outputs are both restrictions of the full convolution.
    H, W = spatial[0] + kh - 1, spatial[1] + kw - 1
    transfer = np.fft.fft2(kernel, s=(H, W), axes=(0, 1))      # (H, W, cin, cout)
    return float(np.max(np.linalg.norm(transfer, ord=2, axis=(-2, -1)))) * (1 + _F64_SLACK)


def _layer_factor(layer, input_shape):
    import keras

    from contractive_keras.layers._hamiltonian_common import PerStepODE

    if isinstance(layer, PerStepODE):
        return discrete_certificate(layer)["lipschitz_bound"], "ode block (discrete certificate)"
    if type(layer).__name__ == "StabilizedNODE":
        from contractive_keras import stability

        cert = stability.lipschitz_bound(layer)
        if cert.certifies != "map":
            raise ValueError(f"{layer.name}: solver={layer.solver!r} is adaptive; only the "
                             "fixed-step schemes have a certificate of the computed map.")
        return cert.value, "stabilized node (discrete certificate)"
    if isinstance(layer, keras.layers.InputLayer):
        return 1.0, "input"
    if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
        return 1.0, "reshape (isometry)"
    if isinstance(layer, keras.layers.Rescaling):
        return float(np.max(np.abs(np.asarray(layer.scale, np.float64)))), "rescaling"
    if isinstance(layer, keras.layers.Dense):
        if layer.activation not in (keras.activations.linear, None):
            raise ValueError(f"{layer.name}: only linear Dense layers are certified.")
        return float(np.linalg.norm(np.asarray(layer.kernel, np.float64), 2)), "dense"
    if isinstance(layer, keras.layers.Conv2D):
        if layer.activation not in (keras.activations.linear, None) or \
                tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1):
            raise ValueError(f"{layer.name}: only linear stride-1 Conv2D layers are certified.")
        return _conv_norm(np.asarray(layer.kernel, np.float64),
                          input_shape[1:3]), "conv2d (circulant bound)"
    raise ValueError(
        f"cannot certify layer {layer.name} of type {type(layer).__name__}; known: "
        "InputLayer, Rescaling, Conv2D, Dense (linear), Flatten, Reshape, CHNODE/HDNN/ResNetODE, "
        "StabilizedNODE.")


@single_threaded_blas
def lipschitz_bound(model):
    """Certified l2 Lipschitz bound of a chain model, input -> logits.

    The product of per-layer bounds: Rescaling |scale|, linear Conv2D (circulant
    embedding, exact for the torus), Dense ||W||_2, reshapes 1, Hamiltonian
    ODE blocks through ``discrete_certificate`` and stabilized NODE blocks
    through ``stability.lipschitz_bound`` (both bound what the discrete layer
    computes, not the continuous-time promise).

    Returns:
        dict with "lipschitz_bound" and "factors" (name, kind, factor).
    """
    import keras

    factors, total = [], 1.0
    for layer in model.layers:
        shape = None
        if isinstance(layer, keras.layers.Conv2D):
            shape = keras.tree.flatten(layer.input)[0].shape
        factor, kind = _layer_factor(layer, shape)
        factors.append((layer.name, kind, factor))
        total *= factor
    return {"lipschitz_bound": total, "factors": factors}


@single_threaded_blas
def certified_radius(model, inputs, labels=None):
    """l2 radius around each input within which the predicted class cannot change.

    radius = (logit margin) / (sqrt(2) * Lip), Lip from ``lipschitz_bound``
    (input in the model's own units, e.g. [0, 1] pixels).  Returns (radius,
    correct) numpy arrays; a misclassified input has radius 0.
    """
    logits = np.asarray(model(inputs, training=False), np.float64)
    lip = lipschitz_bound(model)["lipschitz_bound"]
    pred = logits.argmax(axis=1)
    top2 = np.sort(logits, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    correct = np.ones_like(pred, bool) if labels is None else pred == np.asarray(labels)
    radius = np.where(correct, margin / (math.sqrt(2.0) * lip), 0.0)
    return radius, correct


@single_threaded_blas
def summary(model_or_layer, warn=True):
    """Flat dict of floats for logging: gamma, alpha, rho, c1, c2 and the discrete bound.

    For a model, every fixed-step ODE layer contributes; keys are prefixed
    with the layer name when there is more than one.  With ``warn=True`` a
    CHNODE whose step size is not certified warns (or raises) per its
    ``discrete_check``; ``warn=False`` only reports the numbers.
    """
    from contractive_keras.layers._hamiltonian_common import PerStepODE

    if isinstance(model_or_layer, PerStepODE):
        layers = [model_or_layer]
    else:
        layers = [l for l in model_or_layer._flatten_layers() if isinstance(l, PerStepODE)]
    out = {}
    for layer in layers:
        prefix = f"{layer.name}/" if len(layers) > 1 else ""
        values = {}
        if hasattr(layer, "theorem1_constants"):
            c = layer.theorem1_constants()
            values.update({k: c[k] for k in ("gamma", "alpha", "rho", "c1", "c2")})
        if layer.solver in TABLEAUX:
            cert = layer.check_discrete_guarantee() if warn and hasattr(
                layer, "check_discrete_guarantee") else discrete_certificate(layer)
            values["discrete_lipschitz_bound"] = cert["lipschitz_bound"]
            values["max_step_size"] = cert["max_step_size"]
            values["step_size"] = cert["step_size"]
        out.update({prefix + k: float(v) for k, v in values.items()})
    return out
