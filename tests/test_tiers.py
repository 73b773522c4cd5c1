"""The package's tiers hold (shared/DESIGN.md, "Layout and public API"): every
import of one of the package's own modules points to the same tier or below,
never into another package's private (``_``-prefixed) module, the imports form
no cycle, and no module is longer than ``MAX_LINES``.

The modules are read with ``ast`` (nothing is imported), every import counted,
at module level or inside a function. ``TIERS`` places every module: a module
it does not place fails ``test_every_module_has_a_tier`` until someone gives it
a tier here.
"""

import ast
import os

import pytest

import tests

PACKAGE = "contractive_keras"
PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tests.__file__))), PACKAGE)
MAX_LINES = 450

#: module or package -> tier. A package's entry covers every module inside it;
#: a top-level module needs its own entry (the package root's entry covers
#: only ``__init__.py``).
TIERS = {
    # Placed by DESIGN's tier map.
    "contractive_keras.solvers": 0,
    "contractive_keras.bounds": 1,
    "contractive_keras.layers": 2,
    "contractive_keras.constraints": 2,
    "contractive_keras.certify": 3,
    "contractive_keras.losses": 3,
    "contractive_keras.robustness": 4,
    "contractive_keras.models": 4,
    "contractive_keras.training": 5,
    "contractive_keras.data": 5,
    "contractive_keras.export": 5,
    "contractive_keras.callbacks": 5,
    "contractive_keras.zoo": 5,
    # Placed here (DESIGN's map does not name them, or names them loosely).
    # The datasets' facts (names, input shape, statistics, certified radii):
    # no TensorFlow, used from layers to training.
    "contractive_keras.datasets": 0,
    "contractive_keras.backend": 0,
    # Keras objects, like layers and constraints.
    "contractive_keras.regularizers": 2,
    # Registers the package's Keras classes and reads .keras files.
    "contractive_keras.saving": 2,
    # Certificate checks over bounds and certify (the package docstring's tier 3).
    "contractive_keras.stability": 3,
    # The package root registers layers, constraints, regularizers and losses.
    "contractive_keras": 3,
    # The command over robustness, data and the zoo (`python -m contractive_keras.evaluate`).
    "contractive_keras.evaluate": 5,
}


def tier_of(module, tiers=TIERS, root=PACKAGE):
    """The tier of ``module``: its own entry, else its innermost package's
    (the package ``root`` excepted); None if it has none."""
    if module in tiers:
        return tiers[module]
    name = module.rpartition(".")[0]
    while name and name != root:
        if name in tiers:
            return tiers[name]
        name = name.rpartition(".")[0]
    return None


def modules(package_dir=PACKAGE_DIR):
    """``{module name: path}`` of every ``.py`` file of the package."""
    found = {}
    root = os.path.dirname(package_dir)
    for directory, _, files in os.walk(package_dir):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(directory, file)
                name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def imported_modules(source, module, is_package, known):
    """The package modules ``source`` (the text of ``module``) imports.

    ``from P import x`` imports module ``P.x`` when that is a module, else
    ``P``; the parent packages a module import runs implicitly are not counted.
    """
    package = module if is_package else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                prefix = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{prefix}.{base}" if base else prefix
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


def import_graph(package_dir=PACKAGE_DIR):
    """``({module: set of imported package modules}, {module: number of lines}, {module: path})``."""
    paths = modules(package_dir)
    edges, lines = {}, {}
    for module, path in paths.items():
        with open(path, encoding="utf-8") as f:
            source = f.read()
        lines[module] = source.count("\n")
        edges[module] = imported_modules(source, module, path.endswith("__init__.py"), paths)
    return edges, lines, paths


def unplaced(edges, tiers=TIERS, root=PACKAGE):
    return sorted(m for m in edges if tier_of(m, tiers, root) is None)


def upward_imports(edges, tiers=TIERS, root=PACKAGE):
    """One message per import of a higher tier's module."""
    found = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            low, high = tier_of(module, tiers, root), tier_of(target, tiers, root)
            if low is not None and high is not None and high > low:
                found.append(f"{module} (tier {low}) imports {target} (tier {high}): an import "
                             f"must point to the same tier or below")
    return found


def private_imports(edges):
    """One message per import of a ``_``-prefixed module from outside its own package."""
    found = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            parts = target.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if not (module == owner or module.startswith(owner + ".")):
                        found.append(f"{module} imports {target}, private to {owner}")
                    break
    return found


def cycles(edges):
    """The import cycles (strongly connected components of more than one module).

    A package's own ``__init__`` importing the modules inside it is how a
    package exports names, not a cycle of concepts: those edges are left out.
    """
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(root):
        # Tarjan's algorithm, iterative (no recursion limit on long chains).
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return components


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_every_module_has_a_tier(graph):
    edges, _, paths = graph
    missing = unplaced(edges)
    assert not missing, ("modules without a tier (place each in tests/test_tiers.py's TIERS, as "
                         "DESIGN's layout says): " + ", ".join(f"{m} ({paths[m]})" for m in missing))


def test_every_import_points_to_the_same_tier_or_below(graph):
    edges, _, _ = graph
    found = upward_imports(edges)
    assert not found, "\n".join(found)


def test_no_import_of_another_packages_private_module(graph):
    edges, _, _ = graph
    found = private_imports(edges)
    assert not found, "\n".join(found)


def test_no_import_cycle(graph):
    edges, _, _ = graph
    found = cycles(edges)
    assert not found, "\n".join("import cycle: " + " <-> ".join(c) for c in found)


def test_no_module_is_longer_than_the_limit(graph):
    _, lines, paths = graph
    long = sorted(f"{os.path.relpath(paths[m], os.path.dirname(PACKAGE_DIR))}: {n} lines" for m, n in lines.items() if n > MAX_LINES)
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): " + ", ".join(long)


def test_the_graph_is_the_package(graph):
    """The reader finds the package's modules and their imports (the checks above are not vacuous)."""
    edges, lines, _ = graph
    assert {"contractive_keras", "contractive_keras.layers.chnode", "contractive_keras.models",
            "contractive_keras.zoo", "contractive_keras.training.loop"} <= set(edges)
    assert "contractive_keras.layers" in edges["contractive_keras.models.hamiltonian"]
    assert {"contractive_keras.models.parts", "contractive_keras.datasets"} <= edges["contractive_keras.models.hamiltonian"]
    assert sum(len(t) for t in edges.values()) > 200 and min(lines.values()) >= 0


# The checker itself, on synthetic module graphs.

SYNTHETIC_TIERS = {"pkg.low": 0, "pkg.mid": 1, "pkg.high": 2, "pkg": 1}


def test_checker_flags_an_upward_import_naming_both_modules_and_tiers():
    edges = {"pkg.low.a": {"pkg.high.b"}, "pkg.high.b": {"pkg.low.a"}, "pkg.mid": {"pkg.low.c"},
             "pkg.low.c": set()}
    assert upward_imports(edges, SYNTHETIC_TIERS, "pkg") == [
        "pkg.low.a (tier 0) imports pkg.high.b (tier 2): an import must point to the same tier or below"]


def test_checker_gives_no_tier_to_an_unplaced_module():
    edges = {"pkg.new_module": set(), "pkg.low.x": set(), "pkg": set()}
    assert unplaced(edges, SYNTHETIC_TIERS, "pkg") == ["pkg.new_module"]
    assert tier_of("pkg.low.x", SYNTHETIC_TIERS, "pkg") == 0 and tier_of("pkg", SYNTHETIC_TIERS, "pkg") == 1


def test_checker_finds_cycles_but_not_a_package_exporting_its_modules():
    edges = {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"},
             "pkg.low": {"pkg.low.x"}, "pkg.low.x": {"pkg.low"}}
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_checker_flags_private_modules_imported_from_outside_their_package():
    edges = {"pkg.low.a": {"pkg.low._impl"}, "pkg.high.b": {"pkg.low._impl"}}
    assert private_imports(edges) == ["pkg.high.b imports pkg.low._impl, private to pkg.low"]


def test_imports_are_read_as_modules_with_relative_and_lazy_forms():
    known = {"pkg", "pkg.low", "pkg.low.x", "pkg.high", "pkg.high.y"}
    source = ("from pkg.low import x\nfrom pkg import low\nfrom . import y\n"
              "def f():\n    from ..low.x import thing\n    import pkg.high\n")
    assert imported_modules(source, "pkg.high.z", False, known | {"pkg.high.z"}) == {
        "pkg.low.x", "pkg.low", "pkg.high.y", "pkg.high"}
