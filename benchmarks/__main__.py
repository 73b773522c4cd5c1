"""Runs every benchmark script: ``python -m benchmarks [names...]``.

Every module ``benchmarks/<name>.py`` that defines ``main(argv=None)`` is a
benchmark; with names given, only those run. Each ``main`` parses its own
options (none are passed here) and prints and writes its own results.
"""

import importlib
import os
import pkgutil
import sys
import traceback


def discover():
    """Names of the benchmark modules, sorted."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(info.name for info in pkgutil.iter_modules([here])
                  if not info.name.startswith("_"))


def main(argv=None):
    names = list(sys.argv[1:] if argv is None else argv) or discover()
    failures = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        if not hasattr(module, "main"):
            continue
        print(f"=== benchmarks/{name}.py ===", flush=True)
        try:
            module.main([])
        except Exception:  # pylint: disable=broad-except
            traceback.print_exc()
            failures.append(name)
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
