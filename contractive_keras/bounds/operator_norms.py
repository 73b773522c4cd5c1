"""Operator norms and the singular-value clip (float64).

* ``log_norm``: the logarithmic 2-norm mu_2(A) = lambda_max((A + A^T) / 2);
* ``spectral_norm`` / ``spectral_norms``: ||A||_2 of one matrix or a batch;
* ``conv_operator_norm``: the l2 operator norm of a stride-1 2-D convolution
  on an H x W grid, bounded by its circulant embedding (Sedghi, Gupta and
  Long, "The singular values of convolutional layers", ICLR 2019);
* ``clip_singular_values``: the Frobenius projection of stacked matrices onto
  spectral-norm balls (Eckart-Young-Mirsky), with ``keras.ops`` so that
  Keras constraints run it in the graph.

The NumPy functions take NumPy arrays or any backend's tensors (read as
float64 by ``backend.to_numpy``), so a certificate is the same whichever
backend built the weights.  The ``*_tf`` functions (names kept from the
TensorFlow-only package) and the projections run in the graph on every
Keras backend: in float64 where the backend keeps it
(``backend.float64_in_graph()``), else (JAX without x64) in float32 with
the outward allowances of ``backend_ops.eig_slack``.
"""

import keras
import numpy as np

from contractive_keras import backend
from contractive_keras.bounds import backend_ops
from contractive_keras.bounds.backend_ops import F64_SLACK
from contractive_keras.bounds.validation import as_square

ops = keras.ops


def rounding_unit(dtype):
    """The unit a projection's safety margin is counted in: the dtype's epsilon,
    but at least 1e-13, so that a projected float64 weight also clears the
    relative slack of the float64 certificates (``F64_SLACK`` and theorem1's)."""
    return max(backend_ops.unit(dtype), 1e-13)


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
    return float(np.linalg.norm(backend.to_numpy(A, np.float64), 2))


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
    kernel = backend.to_numpy(kernel, np.float64)
    kh, kw, _, _ = kernel.shape
    H, W = int(spatial[0]) + kh - 1, int(spatial[1]) + kw - 1
    transfer = np.fft.fft2(kernel, s=(H, W), axes=(0, 1))      # (H, W, cin, cout)
    return float(np.max(np.linalg.norm(transfer, ord=2, axis=(-2, -1)))) * (1 + F64_SLACK)


def _t(x):
    """Swaps the last two axes."""
    return ops.swapaxes(x, -1, -2)


def spectral_norm_tf(matrix):
    """||W||_2 of a (m, n) matrix (or a stack) in the graph, differentiable, any backend.

    sqrt(lambda_max) of the smaller Gram matrix (eigenvalues only, whose
    gradient is the outer product of the top singular vectors), inflated by
    ``F64_SLACK`` in float64, by ``backend_ops.eig_slack`` in float32 (JAX
    without x64).  Returns a ``backend_ops.wide()`` tensor.  The name is
    kept for its callers; ``spectral_norm_graph`` is the same function.
    """
    w = backend_ops.as_wide(matrix)
    rows, cols = int(w.shape[-2]), int(w.shape[-1])
    gram = backend_ops.matmul(_t(w), w) if rows >= cols else backend_ops.matmul(w, _t(w))
    top = backend_ops.eigvalsh(gram)[..., -1]
    slack = backend_ops.eig_slack(w.dtype, max(rows, cols), min(rows, cols))
    return ops.sqrt(backend_ops.maximum(top, 0.0)) * (1.0 + slack)


spectral_norm_graph = spectral_norm_tf


def conv_operator_norm_tf(kernels, spatial):
    """``conv_operator_norm`` in the graph: differentiable, batched, any backend.

    The same circulant-embedding bound (Sedghi et al. 2019, Theorem 6): max
    over the frequencies of the (H + kh - 1) x (W + kw - 1) torus of
    sqrt(lambda_max) of the transfer matrix's smaller Gram matrix (Hermitian
    eigenvalues, differentiable, unlike an SVD without singular vectors),
    inflated by ``F64_SLACK``.  A real kernel's transfer matrices are
    conjugate-symmetric in the frequency, so the half-spectrum holds every
    norm.  On TensorFlow this is ``tf.signal.rfft2d`` and a complex
    ``eigvalsh`` (the former code, bit for bit); on JAX and PyTorch the same
    bound in real arithmetic (``_conv_norm_real``).  The name is kept for
    its callers; ``conv_operator_norm_graph`` is the same function.

    Args:
        kernels: one (kh, kw, cin, cout) kernel or a stack (..., kh, kw, cin, cout).
        spatial: (H, W) of the input grid.

    Returns:
        One norm per kernel (a scalar for one kernel, shape (...) for a
        stack), in ``backend_ops.wide()``.
    """
    if not backend.is_tensorflow():
        return _conv_norm_real(kernels, spatial)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
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


conv_operator_norm_graph = conv_operator_norm_tf


def conv_norm_slack(dtype, kernel_shape):
    """Relative allowance of ``_conv_norm_real`` in ``dtype`` (kernel (kh, kw, cin, cout)).

    The transfer entries are sums of kh kw products with rounded cos / sin,
    each off by at most (taps + 2) u times the sum of |K|; as a matrix,
    ||dT||_2 <= (taps + 2) u sqrt(taps r) sigma (r = min(cin, cout), and
    ||K||_F <= sqrt(r) sigma by Parseval); squared, twice that.  The real
    Gram of the complex r x R transfer (R = max) errs by 2 R r u sigma^2 and
    the real symmetric 2r x 2r eigensolver by 16 r u sigma^2.  float64 adds
    that sum (~1e-14 for 3 x 3 kernels) to ``F64_SLACK``.
    """
    kh, kw, cin, cout = (int(v) for v in kernel_shape[-4:])
    taps, r, big = kh * kw, min(cin, cout), max(cin, cout)
    u = backend_ops.unit(dtype) / 2
    total = 1.1 * u * (2 * (taps + 2) * np.sqrt(taps * r) + 2 * big * r + 16 * r + 16)
    if backend_ops.dtype_name(dtype) == "float64":
        return F64_SLACK + total
    return total


def _dft_matrices(kh, kw, grid):
    """cos and sin of the 2-D DFT phases, (H W', kh kw), W' = W // 2 + 1, float64 NumPy."""
    H, W = grid
    rows = np.arange(H)[:, None] * np.arange(kh)[None, :] / H          # (H, kh)
    cols = np.arange(W // 2 + 1)[:, None] * np.arange(kw)[None, :] / W  # (W', kw)
    phase = 2 * np.pi * (rows[:, None, :, None] + cols[None, :, None, :])
    phase = phase.reshape(H * (W // 2 + 1), kh * kw)
    return np.cos(phase), np.sin(phase)


def _conv_norm_real(kernels, spatial):
    """``conv_operator_norm_tf`` with real ``keras.ops`` only (JAX, PyTorch).

    The transfer matrix T = Re + i Im at each frequency is a DFT of the taps,
    written as two real matmuls; lambda_max of its smaller Gram G_r + i G_i
    is that of the real symmetric [[G_r, -G_i], [G_i, G_r]] (each eigenvalue
    of the Hermitian G appears twice; a perturbation that keeps the block
    structure moves the pair together, so the gradient is that of G's).
    """
    k = backend_ops.as_wide(kernels)
    shape = tuple(int(v) for v in k.shape)
    kh, kw, cin, cout = shape[-4:]
    batch = shape[:-4]
    grid = (int(spatial[0]) + kh - 1, int(spatial[1]) + kw - 1)
    cos, sin = (ops.convert_to_tensor(m, k.dtype) for m in _dft_matrices(kh, kw, grid))
    taps = ops.reshape(k, batch + (kh * kw, cin * cout))
    real = ops.reshape(ops.einsum("ft,...tc->...fc", cos, taps), batch + (-1, cin, cout))
    imag = -ops.reshape(ops.einsum("ft,...tc->...fc", sin, taps), batch + (-1, cin, cout))
    if min(cin, cout) == 1:
        squared = ops.sum(real * real + imag * imag, axis=(-2, -1))
    else:
        if cin > cout:   # work with T^H (cout, cin): real part transposed, imaginary negated
            real, imag = _t(real), -_t(imag)
        g_re = backend_ops.matmul(real, _t(real)) + backend_ops.matmul(imag, _t(imag))
        g_im = backend_ops.matmul(imag, _t(real)) - backend_ops.matmul(real, _t(imag))
        embedded = ops.concatenate([ops.concatenate([g_re, -g_im], axis=-1),
                                    ops.concatenate([g_im, g_re], axis=-1)], axis=-2)
        squared = backend_ops.eigvalsh(embedded)[..., -1]
    top = ops.max(squared, axis=-1)
    return ops.sqrt(backend_ops.maximum(top, 0.0)) * (1.0 + conv_norm_slack(k.dtype, shape))


def scale_conv_to_norms(kernels, max_norms, spatial):
    """Scales each stacked kernel (W, kh, kw, cin, cout) so its circulant norm is <= max_norms[k].

    A kernel already inside is returned unchanged; one outside is multiplied
    by target / norm, the target shrunk by the rounding of the product in the
    kernel's dtype (each entry moves the norm by at most
    (unit / 2) sqrt(kh kw min(cin, cout)) times the norm; the 4 units of the
    margin also cover the rounding of the factor).  Not the Frobenius-nearest
    kernel of the ball, but inside it, certified.  Any backend.
    """
    value = ops.convert_to_tensor(kernels)
    dtype = backend_ops.dtype_name(value.dtype)
    kh, kw, cin, cout = (int(v) for v in value.shape[1:])
    margin = 1.0 - 4.0 * rounding_unit(dtype) * np.sqrt(kh * kw * min(cin, cout))
    norms = conv_operator_norm_tf(value, spatial)
    target = ops.convert_to_tensor(np.asarray(max_norms, np.float64) * margin, norms.dtype)
    factor = ops.where(norms <= target, ops.ones_like(norms), target / backend_ops.maximum(norms, 1e-30))
    return value * ops.reshape(ops.cast(factor, dtype), (-1, 1, 1, 1, 1))


def clip_singular_values(stacked, max_norms):
    """Frobenius projection of each slice W_k onto {||W_k||_2 <= max_norms[k]}.

    The SVD and the reconstruction run in ``backend_ops.wide()`` (float64,
    or float32 on JAX without x64); a slice already inside its ball is
    returned unchanged (bit for bit).  The target is shrunk by a few units of
    the variable's dtype so that the rounded result is inside, and, when the
    computation itself is float32, also by twice ``backend_ops.eig_slack``
    (the reconstruction U diag(s) V^T errs by far less than that).  Any backend.

    Args:
        stacked: a (m, n) or (W, m, n) tensor.
        max_norms: a float or one float per slice.
    """
    value = ops.convert_to_tensor(stacked)
    dtype = backend_ops.dtype_name(value.dtype)
    shape = tuple(value.shape)
    w = backend_ops.as_wide(value)
    if len(shape) == 2:
        w = w[None]
    m, n = int(w.shape[-2]), int(w.shape[-1])
    wide = backend_ops.dtype_name(w.dtype)
    slack = backend_ops.eig_slack(wide, max(m, n), min(m, n))
    margin = 1.0 - 4.0 * rounding_unit(dtype) * np.sqrt(min(m, n))
    if wide != "float64":
        margin -= 2.0 * slack
    target = np.broadcast_to(np.asarray(max_norms, np.float64) * margin, (int(w.shape[0]),))
    target = ops.convert_to_tensor(np.array(target), wide)

    # Cheapest test first: ||W||_2 <= ||W||_F.  Then the largest eigenvalue of
    # W^T W; the SVD runs only for a slice outside.
    def check_spectral():
        gram = backend_ops.matmul(_t(w), w)
        top = ops.max(backend_ops.eigvalsh(gram), axis=-1)
        inside = ops.sqrt(backend_ops.maximum(top, 0.0)) * (1.0 + slack) <= target

        def project():
            u, s, vt = ops.svd(w, full_matrices=False)
            clipped = backend_ops.minimum(s, target[:, None])
            projected = backend_ops.matmul(u * clipped[:, None, :], vt)
            return ops.where(inside[:, None, None], w, projected)

        return ops.cond(ops.all(inside), lambda: w, project)

    frobenius = ops.sqrt(ops.sum(ops.square(w), axis=(-2, -1)))
    out = ops.cond(ops.all(frobenius * (1.0 + slack) <= target), lambda: w, check_spectral)
    return ops.reshape(ops.cast(out, dtype), shape)
