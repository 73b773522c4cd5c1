"""Printing and saving a benchmark's results (one table, one JSON file)."""

import json
import os


def print_table(header, unit, rows, ratios, scale=1e3):
    """Prints ``rows`` (name -> seconds, or name -> (seconds, ...)) in ``unit`` and the ratios."""
    print(f"{header:40s} {unit:>9s}")
    for name, value in rows.items():
        values = value if isinstance(value, tuple) else (value,)
        print(f"{name:40s}" + "".join(f" {scale * v:9.2f}" for v in values))
    for name, value in ratios.items():
        print(f"{name:40s} {value:9.3f}")


def write_json(results, path):
    """Writes ``results`` to ``path`` (indent 2), creating its folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(results, handle, indent=2)
    return results
