"""Bjorck orthonormalisation: the polar factor of a matrix, differentiably (any backend).

Anil, Lucas and Grosse 2019 ("Sorting out Lipschitz function approximation",
eq. 5) orthonormalise a weight matrix with the Bjorck-Bowie iteration

    W_{k+1} = W_k (3/2 I - 1/2 W_k^T W_k),

which drives every singular value of W_0 in (0, sqrt(3)) monotonically to 1
and keeps the singular vectors: the limit is the polar factor U V^T of
W_0 = U S V^T.  With GroupSort, layers whose kernels have all singular values
1 are gradient-norm preserving, so a network's certified bound (the product
of the layers' norms) is nearly attained instead of wasted on directions the
kernels shrink.

``bjorck_orthonormalize`` starts from W / ||W||_2 (the exact spectral norm
of the smaller Gram matrix, so every singular value starts in (0, 1]) and
runs the iteration on that Gram matrix: W_k = W_0 Z_k, with the coupled
Newton-Schulz iteration for G^(-1/2), G = W_0^T W_0 (Higham, "Functions of
Matrices", 2008, eq. 6.35):

    T_k = 3/2 I - 1/2 Z_k Y_k,   Y_{k+1} = Y_k T_k,   Z_{k+1} = T_k Z_k,
    Y_0 = G, Z_0 = I,

whose Z_k is exactly Bjorck's polynomial in exact arithmetic.  It costs three
small matmuls per iteration instead of two with W itself, and it is stable
in floating point, unlike the uncoupled recurrence Z_{k+1} = Z_k T(Z_k G Z_k),
which amplifies rounding by |1 - sigma_j / sigma_i| / 2 per step and
diverges once the condition number exceeds 3.  The result
is not exactly orthonormal after finitely many steps (tiny singular values
converge slowly); a certificate must take the norm of the matrix the layer
applies, never assume 1.

Written with ``keras.ops``: it runs (and differentiates) under TensorFlow,
JAX and PyTorch, in the input's dtype.
"""

import keras

from contractive_keras.bounds import backend_ops

ops = keras.ops


def bjorck_orthonormalize(matrix, iterations=15):
    """Bjorck-Bowie orthonormalisation of a (m, n) matrix (module docstring), differentiable.

    Args:
        matrix: (m, n) float tensor, nonzero.
        iterations: number of Bjorck steps, >= 0 (0 returns W / ||W||_2).

    Returns:
        (m, n) tensor of the input's dtype: orthonormal columns when m >= n,
        orthonormal rows when m < n, up to the iteration's convergence.

    Raises:
        ValueError: a tensor that is not a matrix, or a negative iteration count.

    Example:

    >>> import numpy as np
    >>> w = bjorck_orthonormalize(np.random.default_rng(0).normal(size=(6, 3)), 20)
    >>> bool(np.allclose(np.asarray(w).T @ np.asarray(w), np.eye(3), atol=1e-6))
    True
    """
    w = ops.convert_to_tensor(matrix)
    if len(w.shape) != 2:
        raise ValueError(f"bjorck_orthonormalize takes a matrix, got shape {tuple(w.shape)}.")
    if int(iterations) < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations!r}.")
    tall = w.shape[0] >= w.shape[1]
    gram = (backend_ops.matmul(w, w, transpose_a=True) if tall
            else backend_ops.matmul(w, w, transpose_b=True))
    top = backend_ops.eigvalsh(gram)[-1]
    identity = ops.eye(int(gram.shape[0]), dtype=w.dtype)
    y, z = gram / top, identity
    for _ in range(int(iterations)):
        t = 1.5 * identity - 0.5 * backend_ops.matmul(z, y)
        y, z = backend_ops.matmul(y, t), backend_ops.matmul(t, z)
    product = backend_ops.matmul(w, z) if tall else backend_ops.matmul(z, w)
    return product / ops.sqrt(top)
