"""What every figure module of docs/ shares: paths, the figure registry, matplotlib, reporting.

Importing it sets the thread environment the certificates need (before NumPy
loads) and puts the source tree on ``sys.path``.
"""

import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The certificates do thousands of small (64 x 64) eigen-decompositions; a
# multi-threaded OpenBLAS makes each one ~10x slower on a busy 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
RESULTS_L2 = os.path.join(DOCS, "results", "l2")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: name -> function; filled by ``@figure``.
FIGURES = {}


def figure(function):
    """Registers a figure function under its name."""
    FIGURES[function.__name__] = function
    return function


def pyplot():
    """matplotlib.pyplot on the Agg backend, with a clear error when it is missing."""
    try:
        import matplotlib
    except ImportError as e:
        raise SystemExit("docs/figures.py needs matplotlib: pip install -e '.[plots]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "font.size": 10,
                         "axes.grid": True, "grid.alpha": 0.3})
    return plt


def quiet_tensorflow():
    """Silences TensorFlow's Python-side INFO/WARNING logs (AutoGraph notes)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)


def plain_log_axis(ax, axis="y"):
    """Plain numbers (0.5, 2, 20) instead of 5 x 10^-1 on a log axis, after plotting."""
    from matplotlib import ticker

    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    keep = (2.0, 5.0) if math.log10(hi / lo) > 1.0 else (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)

    def minor(value, _):
        mantissa = round(value / 10.0 ** math.floor(math.log10(value)), 6)
        return f"{value:g}" if mantissa in keep else ""

    target.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(ticker.FuncFormatter(minor))


def report(name, values):
    """Prints the numbers a figure's description quotes."""
    print(f"[{name}]")
    for key, value in values.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        print(f"  {key}: {value}")
    sys.stdout.flush()
