"""Operator norms and the singular-value clip (float64).

* ``log_norm``: the logarithmic 2-norm mu_2(A) = lambda_max((A + A^T) / 2);
* ``spectral_norm`` / ``spectral_norms``: ||A||_2 of one matrix or a batch;
* ``conv_operator_norm``: the l2 operator norm of a stride-1 2-D convolution
  on an H x W grid, bounded by its circulant embedding (Sedghi, Gupta and
  Long, "The singular values of convolutional layers", ICLR 2019);
* ``clip_singular_values``: the Frobenius projection of stacked matrices onto
  spectral-norm balls (Eckart-Young-Mirsky), in TensorFlow so that Keras
  constraints can run it in the graph.
"""

import numpy as np
import tensorflow as tf

from contractive_keras.bounds.validation import as_square

# Relative slack added to float64 eigenvalue-based norms: LAPACK's symmetric
# eigensolver is backward stable, with errors ~ n * 2^-52 * ||A|| (< 1e-13 for n <= 64).
F64_SLACK = 1e-13


def rounding_unit(dtype):
    """The unit a projection's safety margin is counted in: the dtype's epsilon,
    but at least 1e-13, so that a projected float64 weight also clears the
    relative slack of the float64 certificates (``F64_SLACK`` and theorem1's)."""
    return max(float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps), 1e-13)


def sym(A):
    """The symmetric part (A + A^T) / 2."""
    return 0.5 * (A + A.T)


def log_norm(A):
    """mu_2(A) = lambda_max((A + A^T) / 2).

    Raises:
        ValueError: if A is not a finite square matrix.
    """
    return float(np.linalg.eigvalsh(sym(as_square(A)))[-1])


def spectral_norm(A):
    """||A||_2, the largest singular value."""
    return float(np.linalg.norm(A, 2))


def top_eigenpair(S):
    """(lambda_max, unit eigenvector) of a symmetric matrix."""
    w, V = np.linalg.eigh(S)
    return float(w[-1]), V[:, -1]


def spectral_norms(mats):
    """Upper bounds of ||X||_2 for a batch (..., n, n): sqrt(lambda_max(X^T X)) (1 + slack).

    ``eigvalsh`` of the Gram matrix is about twice as fast as an SVD for these
    small matrices; the slack covers its rounding.
    """
    gram = np.swapaxes(mats, -1, -2) @ mats
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[..., -1], 0.0)) * (1.0 + F64_SLACK)


def conv_operator_norm(kernel, spatial):
    """Upper bound of the l2 operator norm of a stride-1 2-D convolution.

    A zero-padded convolution on an H x W grid ("same" or "valid" output) is a
    restriction of the circular convolution on the (H + kh - 1) x (W + kw - 1)
    torus, whose norm is exactly max over the 2-D DFT frequencies omega of
    ||K_hat(omega)||_2 (Sedghi et al. 2019, Theorem 6).

    Args:
        kernel: (kh, kw, cin, cout) array.
        spatial: (H, W) of the input grid.
    """
    kernel = np.asarray(kernel, np.float64)
    kh, kw, _, _ = kernel.shape
    H, W = int(spatial[0]) + kh - 1, int(spatial[1]) + kw - 1
    transfer = np.fft.fft2(kernel, s=(H, W), axes=(0, 1))      # (H, W, cin, cout)
    return float(np.max(np.linalg.norm(transfer, ord=2, axis=(-2, -1)))) * (1 + F64_SLACK)


def spectral_norm_tf(matrix):
    """||W||_2 of a (m, n) matrix in TensorFlow, float64, differentiable.

    sqrt(lambda_max) of the smaller Gram matrix (eigvalsh, whose gradient is
    the outer product of the top singular vectors), inflated by ``F64_SLACK``.
    """
    w = tf.cast(tf.convert_to_tensor(matrix), tf.float64)
    gram = (tf.matmul(w, w, transpose_a=True) if w.shape[-2] >= w.shape[-1]
            else tf.matmul(w, w, transpose_b=True))
    top = tf.linalg.eigvalsh(gram)[..., -1]
    return tf.sqrt(tf.maximum(top, 0.0)) * (1.0 + F64_SLACK)


def conv_operator_norm_tf(kernels, spatial):
    """``conv_operator_norm`` in TensorFlow: float64, differentiable, batched.

    The same circulant-embedding bound (Sedghi et al. 2019, Theorem 6): max
    over the frequencies of the (H + kh - 1) x (W + kw - 1) torus of
    sqrt(lambda_max) of the transfer matrix's smaller Gram matrix (Hermitian
    ``eigvalsh``, differentiable, unlike ``tf.linalg.svd`` without singular
    vectors), inflated by ``F64_SLACK``.  A real kernel's transfer matrices
    are conjugate-symmetric in the frequency, so the half-spectrum of
    ``rfft2d`` holds every norm.

    Args:
        kernels: one (kh, kw, cin, cout) kernel or a stack (..., kh, kw, cin, cout).
        spatial: (H, W) of the input grid.

    Returns:
        float64, one norm per kernel: a scalar for one kernel, shape (...) for a stack.
    """
    kernels = tf.cast(tf.convert_to_tensor(kernels), tf.float64)
    rank = kernels.shape.rank
    kh, kw, cin, cout = (int(v) for v in kernels.shape[-4:])
    grid = (int(spatial[0]) + kh - 1, int(spatial[1]) + kw - 1)
    batch = list(range(rank - 4))
    taps = tf.transpose(kernels, batch + [rank - 2, rank - 1, rank - 4, rank - 3])  # (..., cin, cout, kh, kw)
    transfer = tf.signal.rfft2d(taps, fft_length=grid)                            # (..., cin, cout, H, W')
    transfer = tf.transpose(transfer, batch + [rank - 2, rank - 1, rank - 4, rank - 3])  # (..., H, W', cin, cout)
    if min(cin, cout) == 1:
        squared = tf.reduce_sum(tf.math.real(transfer * tf.math.conj(transfer)), axis=[-2, -1])
    else:
        if cin > cout:
            transfer = tf.linalg.adjoint(transfer)
        gram = tf.matmul(transfer, transfer, adjoint_b=True)
        squared = tf.math.real(tf.linalg.eigvalsh(gram)[..., -1])
    return tf.sqrt(tf.maximum(tf.reduce_max(squared, axis=[-2, -1]), 0.0)) * (1.0 + F64_SLACK)



def scale_conv_to_norms(kernels, max_norms, spatial):
    """Scales each stacked kernel (W, kh, kw, cin, cout) so its circulant norm is <= max_norms[k].

    A kernel already inside is returned unchanged; one outside is multiplied
    by target / norm, the target shrunk by the rounding of the product in the
    kernel's dtype (each entry moves the norm by at most
    (unit / 2) sqrt(kh kw min(cin, cout)) times the norm).  Not the
    Frobenius-nearest kernel of the ball, but inside it, certified.
    """
    value = tf.convert_to_tensor(kernels)
    dtype = value.dtype
    kh, kw, cin, cout = (int(v) for v in value.shape[1:])
    margin = 1.0 - 4.0 * rounding_unit(dtype) * np.sqrt(kh * kw * min(cin, cout))
    target = tf.constant(np.asarray(max_norms, np.float64) * margin, tf.float64)
    norms = conv_operator_norm_tf(value, spatial)
    factor = tf.where(norms <= target, tf.ones_like(norms), target / tf.maximum(norms, 1e-300))
    return value * tf.reshape(tf.cast(factor, dtype), [-1, 1, 1, 1, 1])


def clip_singular_values(stacked, max_norms):
    """Frobenius projection of each slice W_k onto {||W_k||_2 <= max_norms[k]}.

    The SVD and the reconstruction run in float64; a slice already inside
    its ball is returned unchanged (bit for bit).  The target is shrunk by
    a few units of the variable's dtype so that the rounded result is inside.

    Args:
        stacked: a (m, n) or (W, m, n) tensor.
        max_norms: a float or one float per slice.
    """
    value = tf.convert_to_tensor(stacked)
    dtype = value.dtype
    w = tf.cast(value, tf.float64)
    if w.shape.rank == 2:
        w = w[None]
    rows = min(w.shape[-2], w.shape[-1])
    margin = 1.0 - 4.0 * rounding_unit(dtype) * np.sqrt(rows)
    target = tf.constant(np.asarray(max_norms, np.float64) * margin, tf.float64)
    target = tf.broadcast_to(target, tf.shape(w)[:1])

    # Cheapest test first: ||W||_2 <= ||W||_F.  Then the largest eigenvalue of
    # W^T W (relative error ~1e-15); the SVD runs only for a slice outside.
    def check_spectral():
        gram = tf.matmul(w, w, transpose_a=True)
        norm = tf.sqrt(tf.maximum(tf.reduce_max(tf.linalg.eigvalsh(gram), axis=-1), 0.0))
        inside = norm * (1.0 + 1e-13) <= target

        def project():
            s, u, v = tf.linalg.svd(w)
            clipped = tf.minimum(s, target[:, None])
            projected = tf.matmul(u * clipped[:, None, :], v, adjoint_b=True)
            return tf.where(inside[:, None, None], w, projected)

        return tf.cond(tf.reduce_all(inside), lambda: w, project)

    frobenius = tf.sqrt(tf.reduce_sum(tf.square(w), axis=[-2, -1]))
    out = tf.cond(tf.reduce_all(frobenius * (1.0 + 1e-13) <= target), lambda: w,
                  check_spectral)
    return tf.reshape(tf.cast(out, dtype), tf.shape(value))
