"""NumPy float64 references of the layers' equations, for the backend tests.

Each function takes the layer's weights as NumPy arrays and computes what the
layer's docstring says it computes, with no Keras and no solver of the
package: the fixed-step schemes are written out here.
"""

import numpy as np

TABLEAUS = {
    # (a, b, c) of the explicit Runge-Kutta schemes the layers accept by name.
    "euler": ([[]], [1.0], [0.0]),
    "midpoint": ([[], [0.5]], [0.0, 1.0], [0.0, 0.5]),
    "rk4": ([[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], [1 / 6, 1 / 3, 1 / 3, 1 / 6],
            [0.0, 0.5, 0.5, 1.0]),
}


def odeint(field, y, method, steps, h, trajectory=False):
    """``steps`` steps of size h of an explicit scheme; ``field(t, y, k)``, k the step index."""
    a, b, c = TABLEAUS[method]
    states = [y]
    for k in range(steps):
        t = k * h
        stages = []
        for i, row in enumerate(a):
            yi = y + h * sum((aij * s for aij, s in zip(row, stages)), np.zeros_like(y))
            stages.append(field(t + c[i] * h, yi, k))
        y = y + h * sum(bi * s for bi, s in zip(b, stages))
        states.append(y)
    return np.stack(states, 1) if trajectory else y


def canonical_j(n):
    half = n // 2
    eye, zero = np.eye(half), np.zeros((half, half))
    return np.block([[zero, eye], [-eye, zero]])


def theorem1_gamma(K, L, kappa, slope_bound, eps, J):
    """gamma of Theorem 1 (shared/DESIGN.md) for stacked K (W, m, n), L (W, p, n)."""
    LtL = [l.T @ l for l in L]
    c1 = min(np.linalg.eigvalsh(m)[0] for m in LtL) + kappa
    c2 = max(np.linalg.eigvalsh(m)[-1] + slope_bound * np.linalg.eigvalsh(k.T @ k)[-1]
             for m, k in zip(LtL, K)) + kappa
    alpha = (c2 - c1) / (c2 + c1)
    j2 = np.linalg.eigvalsh(J @ J.T)[-1]
    return np.sqrt((alpha ** 2 + eps) * j2 / (1.0 - alpha ** 2 - eps))


def chnode_field(K, b, L, kappa, gamma, J, sigma=np.tanh):
    """xi' = (J - gamma I)(K_k^T sigma(K_k xi + b_k) + (L_k^T L_k + kappa I) xi), rows xi."""
    n = J.shape[0]
    A = J - gamma * np.eye(n)

    def field(t, x, k):
        k = min(k, len(K) - 1)
        M = L[k].T @ L[k] + kappa * np.eye(n)
        return (sigma(x @ K[k].T + b[k]) @ K[k] + x @ M) @ A.T
    return field


def hdnn_field(K, b, J, sigma=np.tanh):
    """xi' = J K_k^T sigma(K_k xi + b_k)."""
    def field(t, x, k):
        k = min(k, len(K) - 1)
        return sigma(x @ K[k].T + b[k]) @ K[k] @ J.T
    return field


def resnet_field(K, b, sigma=np.tanh):
    """xi' = sigma(K_k^T xi + b_k)."""
    def field(t, x, k):
        k = min(k, len(K) - 1)
        return sigma(x @ K[k] + b[k])
    return field


def leaky_relu(x, a):
    return np.maximum(x, a * x)


def conv_same(x, kernel):
    """Stride-1 'same' cross-correlation (as Keras's conv), x (B, H, W, c), kernel (kh, kw, c, d)."""
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[3],))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,cd->bhwd", padded[:, i:i + height, j:j + width], kernel[i, j])
    return out


def conv_matrix(kernel, grid):
    """The dense matrix of ``conv_same`` on one (H, W, c) map, flattened."""
    c = kernel.shape[2]
    size = grid[0] * grid[1] * c
    basis = np.eye(size).reshape((size,) + tuple(grid) + (c,))
    return conv_same(basis, kernel).reshape(size, -1).T


def conv_chnode_field(K, b, L, kappa, gamma, J, grid, sigma=np.tanh):
    """The convolutional CH-NODE field: K the conv's dense matrix, K^T its transpose."""
    n = J.shape[0]
    A = J - gamma * np.eye(n)
    mats = [conv_matrix(k, grid) for k in K]

    def field(t, x, k):
        k = min(k, len(K) - 1)
        M = L[k].T @ L[k] + kappa * np.eye(n)
        z = sigma(conv_same(x, K[k]) + b[k])
        flat = z.reshape(len(x), -1) @ mats[k]          # (K^T z) per sample, K^T = matrix^T
        back = flat.reshape(x.shape)
        return (back + x @ M) @ A.T
    return field
