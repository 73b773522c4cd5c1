"""Backward sensitivity ||d xi(T) / d xi(t_k)||_2 along trajectories (Theorem 2).

Theorem 2 (shared/DESIGN.md, "CH-NODE"): for a contractive CH-NODE flow the
backward sensitivity matrix obeys ||d xi(T) / d xi(T - t)||_2 <= exp(-rho t / 2).
``bsm_norms`` measures that norm on the map a fixed-step layer computes, at
given inputs: exactly (per-row Jacobians multiplied backwards) or by power
iteration on Phi^T Phi with JVP / VJP (a lower estimate).

Backends: on TensorFlow both methods run as compiled graphs
(``tf.GradientTape``, forward accumulators); on JAX and torch the "exact"
method takes each step's per-row Jacobian from n vector-Jacobian products
of the backend (``_step_jacobians``, the one dispatch) and multiplies them
in NumPy float64, while "power" refuses in one line
(``backend.require_tensorflow``).  TensorFlow is imported when it runs,
not with the module.
"""

import keras
import numpy as np

from contractive_keras import backend
from contractive_keras import solvers


def _tf():
    import tensorflow  # pylint: disable=import-outside-toplevel
    return tensorflow


def _one_step(layer, field, y, k):
    """Step k of the layer's scheme from the rows y (P, n)."""
    tf = _tf()

    def shifted(t, state, step):
        return field(t, state, step + k)

    state = solvers.odeint(shifted, layer.to_state(y), tf.constant(layer.step_size, y.dtype),
                           method=layer.solver, steps=1, with_step_index=True)
    return layer.from_state(state)


def _trajectory(layer, rows, field):
    tf = _tf()
    step = tf.function(lambda y, k: _one_step(layer, field, y, k))
    states = [rows]
    for k in range(layer.steps):
        states.append(step(states[-1], tf.constant(k, tf.int32)))
    return states


def _step_jacobian_fn(layer, field):
    """A compiled (y, k) -> d step_k(y) / dy, per row: one trace for all k."""
    tf = _tf()

    @tf.function
    def jacobian(y, k):
        with tf.GradientTape() as tape:
            tape.watch(y)
            out = _one_step(layer, field, y, k)
        return tape.batch_jacobian(out, y)

    return jacobian


def _neutral_step(layer, field, y, k):
    """Step k of the layer's scheme from the rows y (P, n), with ``keras.ops`` (any backend)."""
    def shifted(t, state, step):
        return field(t, state, step + k)

    state = solvers.odeint(shifted, layer.to_state(y),
                           keras.ops.convert_to_tensor(layer.step_size, y.dtype),
                           method=layer.solver, steps=1, with_step_index=True)
    return layer.from_state(state)


def _step_jacobians(layer, field, y, k):
    """(step_k(y), its per-row Jacobians (P, n, n) in float64) on JAX or torch.

    The rows are independent, so the vector-Jacobian product with the i-th
    unit vector in every row gives row i of every row's Jacobian: n VJPs.
    """
    rows, n = int(y.shape[0]), int(y.shape[1])
    units = [keras.ops.convert_to_tensor(np.repeat(np.eye(n)[i:i + 1], rows, axis=0), y.dtype)
             for i in range(n)]
    if backend.name() == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        out, pullback = jax.vjp(lambda v: _neutral_step(layer, field, v, k), y)
        grads = [pullback(u)[0] for u in units]
    elif backend.name() == "torch":
        import torch  # pylint: disable=import-outside-toplevel
        y = y.detach().requires_grad_(True)
        out = _neutral_step(layer, field, y, k)
        grads = [torch.autograd.grad(out, y, grad_outputs=u, retain_graph=True)[0] for u in units]
        out = out.detach()
    else:
        raise NotImplementedError(f"bsm_norms has no Jacobian path for backend {backend.name()!r}")
    jac = np.stack([backend.to_numpy(g, np.float64) for g in grads], axis=1)
    return out, jac


def _exact_neutral(layer, inputs):
    """The "exact" method on JAX or torch: (N + 1, rows) norms, float64."""
    n = layer.state_size
    rows = keras.ops.reshape(keras.ops.convert_to_tensor(inputs, layer.compute_dtype), (-1, n))
    field = layer.field_closure()
    jacobians, state = [], rows
    for k in range(layer.steps):
        state, jac = _step_jacobians(layer, field, state, k)
        jacobians.append(jac)
    phi = np.broadcast_to(np.eye(n), (int(rows.shape[0]), n, n))
    norms = [np.ones(int(rows.shape[0]))]
    for jac in reversed(jacobians):
        phi = phi @ jac
        norms.append(np.linalg.svd(phi, compute_uv=False).max(axis=-1))
    return np.stack(norms[::-1])


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

    Raises:
        NotImplementedError: method "power" (or "auto" with n > 64) on a
            Keras backend other than TensorFlow.
    """
    n = layer.state_size
    if method == "auto":
        method = "exact" if n <= 64 else "power"
    if method not in ("exact", "power"):
        raise ValueError(f"method must be 'auto', 'exact' or 'power', got {method!r}.")
    if method == "power":
        backend.require_tensorflow("certify.bsm_norms(method='power') (forward accumulators)",
                                   "method='exact'")
    if method == "exact" and not backend.is_tensorflow():
        result = _exact_neutral(layer, inputs)
        return result if per_row else result.max(axis=1)
    tf = _tf()
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
