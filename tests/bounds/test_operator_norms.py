"""The one TensorFlow circulant-embedding norm (``conv_operator_norm_tf``) against
the two TensorFlow versions it replaced and the float64 NumPy certificate path."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.bounds.operator_norms import F64_SLACK
from contractive_keras.bounds.operator_norms import conv_operator_norm
from contractive_keras.bounds.operator_norms import conv_operator_norm_tf
from contractive_keras.bounds.operator_norms import scale_conv_to_norms

# (kh, kw, cin, cout, spatial): square, wide, tall, one-channel and 1x1 kernels
CASES = [(3, 3, 4, 4, (6, 6)), (3, 3, 2, 5, (5, 7)), (2, 3, 6, 3, (4, 4)),
         (3, 3, 1, 4, (6, 6)), (1, 1, 3, 3, (5, 5))]


def _old_stacked(kernels, spatial):
    """The former ``conv_operator_norms_tf``: full fft2d, complex SVD, +1e-12."""
    kernels = tf.cast(tf.convert_to_tensor(kernels), tf.float64)
    kh, kw = int(kernels.shape[1]), int(kernels.shape[2])
    H, W = int(spatial[0]) + kh - 1, int(spatial[1]) + kw - 1
    taps = tf.transpose(kernels, [0, 3, 4, 1, 2])
    taps = tf.pad(taps, [[0, 0], [0, 0], [0, 0], [0, H - kh], [0, W - kw]])
    transfer = tf.signal.fft2d(tf.complex(taps, tf.zeros_like(taps)))
    transfer = tf.transpose(transfer, [0, 3, 4, 1, 2])
    singular = tf.linalg.svd(transfer, compute_uv=False)
    return tf.reduce_max(tf.math.real(singular), axis=[1, 2, 3]) * (1.0 + 1e-12)


def _old_single(kernel, spatial):
    """The former single-kernel ``conv_operator_norm_tf`` (rfft2d, Gram eigvalsh)."""
    kernel = tf.cast(tf.convert_to_tensor(kernel), tf.float64)
    kh, kw, cin, cout = (int(v) for v in kernel.shape)
    grid = (int(spatial[0]) + kh - 1, int(spatial[1]) + kw - 1)
    taps = tf.transpose(kernel, [2, 3, 0, 1])
    transfer = tf.signal.rfft2d(taps, fft_length=grid)
    transfer = tf.transpose(transfer, [2, 3, 0, 1])
    if min(cin, cout) == 1:
        squared = tf.reduce_sum(tf.math.real(transfer * tf.math.conj(transfer)), axis=[-2, -1])
    else:
        if cin > cout:
            transfer = tf.linalg.adjoint(transfer)
        gram = tf.matmul(transfer, transfer, adjoint_b=True)
        squared = tf.math.real(tf.linalg.eigvalsh(gram)[..., -1])
    return tf.sqrt(tf.maximum(tf.reduce_max(squared), 0.0)) * (1.0 + F64_SLACK)


def _kernels(case, count=3, seed=0):
    kh, kw, cin, cout, _ = case
    return np.random.default_rng(seed).normal(size=(count, kh, kw, cin, cout))


@pytest.mark.parametrize("case", CASES)
def test_one_kernel_gives_the_former_single_kernel_value_bit_for_bit(case):
    for kernel in _kernels(case):
        assert float(conv_operator_norm_tf(kernel, case[4])) == float(_old_single(kernel, case[4]))


@pytest.mark.parametrize("case", CASES)
def test_a_stack_gives_each_kernel_its_own_value_bit_for_bit(case):
    kernels = _kernels(case, count=4, seed=1)
    stacked = conv_operator_norm_tf(kernels, case[4]).numpy()
    assert stacked.shape == (4,)
    np.testing.assert_array_equal(stacked, [float(_old_single(k, case[4])) for k in kernels])
    nested = conv_operator_norm_tf(kernels.reshape((2, 2) + kernels.shape[1:]), case[4]).numpy()
    np.testing.assert_array_equal(nested.ravel(), stacked)


@pytest.mark.parametrize("case", CASES)
def test_a_stack_matches_the_former_fft2d_svd_version_up_to_its_slack(case):
    # Both are sigma_max(1 + slack) with float64 rounding ~1e-15; the former slack
    # was 1e-12, the one kept F64_SLACK = 1e-13: divided out, they agree to 1e-13.
    kernels = _kernels(case, count=4, seed=2)
    new = conv_operator_norm_tf(kernels, case[4]).numpy() / (1.0 + F64_SLACK)
    old = _old_stacked(kernels, case[4]).numpy() / (1.0 + 1e-12)
    np.testing.assert_allclose(new, old, rtol=1e-13, atol=0)


@pytest.mark.parametrize("case", CASES)
def test_tensorflow_and_float64_numpy_paths_agree(case):
    for kernel in _kernels(case, seed=3):
        np.testing.assert_allclose(float(conv_operator_norm_tf(kernel, case[4])),
                                   conv_operator_norm(kernel, case[4]), rtol=1e-13, atol=0)


def test_scaled_kernels_are_inside_their_norm_balls():
    kernels = _kernels(CASES[0], count=3, seed=4)
    max_norms = [0.5, 100.0, 1.0]
    scaled = scale_conv_to_norms(tf.constant(kernels), max_norms, CASES[0][4]).numpy()
    for k, kernel in enumerate(scaled):
        assert conv_operator_norm(kernel, CASES[0][4]) <= max_norms[k]
    np.testing.assert_array_equal(scaled[1], kernels[1])   # already inside: unchanged
