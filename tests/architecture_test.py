"""The layering of eb_tf, checked on its import graph (tests/import_graph.py) without importing it.

Sub-packages in dependency order, each importing only those before it plus the top-level
`eb_tf.compat`, `eb_tf.io_utils` and `eb_tf.version`: sparsity, pruning, baselines,
quantization, export, models, data, distribute, pipeline, tuning, bench (models and data
do not depend on each other). Function-level imports count as much as module-level ones.
"""

import pytest

from tests import import_graph

ORDER = ("sparsity", "pruning", "baselines", "quantization", "export", "models", "data",
         "distribute", "pipeline", "tuning", "bench")
INDEPENDENT = {("data", "models"), ("models", "data")}
TOP_LEVEL = ("eb_tf.compat", "eb_tf.io_utils", "eb_tf.version")
MAX_TOP_LEVEL_MODULES = 6
# package -> (modules that may import it anywhere, modules that may import it only inside
# a function); a module matches a prefix if it is it or lies under it.
THIRD_PARTY = {
    "keras_tuner": ((), ("eb_tf.compat",)),  # compat loads it in __getattr__ (importlib)
    "tensorflow_model_optimization": (("eb_tf.quantization", "tests"),
                                      ("eb_tf.export", "eb_tf.bench")),
    "matplotlib": ((), ("eb_tf.bench", "eb_tf.pipeline.plots")),
    "tf_keras": (("eb_tf.compat",), ()),
    "keras": (("eb_tf.compat", "tests"), ()),  # Keras 3: compat is the one seam
}
SCANNED_DIRS = ("eb_tf", "binaries", "configs")
FORBIDDEN_TEXT = {"(issue": "an issue marker", "/work/": "a machine path",
                  "/root/": "a machine path"}

GRAPH = import_graph.graph()
EB_TF = {name: m for name, m in GRAPH.items() if name.split(".")[0] == "eb_tf"}


def _under(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _where(module, imp):
    return f"{module.path}:{imp.line} `{imp.statement}`"


def _subpackage(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


def test_import_graph_reads_imports_as_python_resolves_them(tmp_path):
    files = {
        "eb_tf/__init__.py": ('"""import eb_tf.fake"""\nfrom eb_tf import a\n'
                              '_LAZY = {"x": "eb_tf.b"}\n'),
        "eb_tf/a.py": "from eb_tf import _hidden, __version__\nfrom .b import thing\n",
        "eb_tf/b.py": "def f():\n    from eb_tf import a, name\n    import tensorflow\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph.graph(tmp_path)
    summary = {n: sorted((i.target, i.in_function, i.private) for i in m.imports)
               for n, m in graph.items()}
    assert summary == {
        "eb_tf": [("eb_tf.a", False, ()), ("eb_tf.b", True, ())],
        "eb_tf.a": [("eb_tf", False, ("_hidden",)), ("eb_tf.b", False, ())],
        "eb_tf.b": [("eb_tf", True, ()), ("eb_tf.a", True, ()), ("tensorflow", True, ())],
    }


def test_no_function_in_eb_tf_imports_the_eb_tf_package():
    bad = [_where(m, i) for m in EB_TF.values() for i in m.imports
           if i.in_function and i.target == "eb_tf"]
    assert not bad, ("Functions of eb_tf import the `eb_tf` package itself (a cycle through "
                     "its __init__); import the defining module instead, e.g. "
                     f"`from eb_tf.pruning import flops`: {bad}")


def test_no_module_imports_a_private_name_of_another_project_module():
    bad = [f"{_where(m, i)} imports {list(i.private)}" for m in GRAPH.values()
           for i in m.imports if i.project and i.private and i.target != m.name]
    assert not bad, ("Private names imported across modules; make them public (no leading "
                     f"underscore, in the defining module's API) or keep them local: {bad}")


def _find_cycle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_among_eb_tf_modules():
    edges = {name: {d for d in m.deps if d in EB_TF} for name, m in EB_TF.items()}
    cycle = _find_cycle(edges)
    assert cycle is None, (
        f"Import cycle (function-level imports included): {' -> '.join(cycle)}. Break it by "
        "importing the defining submodule (`from eb_tf.pruning import flops`), not a name of "
        "a package __init__, or by moving the shared code below both modules.")


def _allowed(importer, target):
    if target in TOP_LEVEL:
        return True
    own, other = _subpackage(importer), _subpackage(target)
    if own is None:  # compat, io_utils, version: only each other
        return False
    if other is None or (own, other) in INDEPENDENT:
        return False
    return ORDER.index(other) <= ORDER.index(own)


def test_sub_packages_import_only_earlier_sub_packages():
    bad = [f"{_where(m, i)} ({_subpackage(m.name) or 'top level'} -> "
           f"{_subpackage(i.target) or i.target})"
           for m in EB_TF.values() if m.name != "eb_tf" for i in m.imports
           if i.target.split(".")[0] == "eb_tf" and i.target != m.name
           and not _allowed(m.name, i.target)]
    assert not bad, (f"Layering violations; the order is {' < '.join(ORDER)} (models and data "
                     "independent), plus eb_tf.compat/io_utils/version. Move the code down to "
                     f"the lowest sub-package that needs it, or pass it in: {bad}")


def test_eb_tf_has_few_top_level_modules():
    top = sorted(p.name for p in (import_graph.ROOT / "eb_tf").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, (
        f"eb_tf/ holds {len(top)} top-level modules {top} (at most {MAX_TOP_LEVEL_MODULES}); "
        "move the new ones into the sub-package they belong to.")


@pytest.mark.parametrize("package", sorted(THIRD_PARTY))
def test_heavy_third_party_packages_are_imported_only_where_allowed(package):
    anywhere, lazily = THIRD_PARTY[package]
    bad = [_where(m, i) for m in GRAPH.values() for i in m.imports
           if i.target.split(".")[0] == package and not _under(m.name, anywhere)
           and not (i.in_function and _under(m.name, lazily))]
    assert not bad, (f"{package} may be imported only in {list(anywhere)}, or inside a "
                     f"function of {list(lazily)}; import it there (lazily) or go through "
                     f"eb_tf.compat: {bad}")


def _scanned_files():
    files = [f for f in import_graph.python_files() if f.split("/")[0] in SCANNED_DIRS]
    return files + ["BUILD", "README.md"]


@pytest.mark.parametrize("marker", sorted(FORBIDDEN_TEXT))
def test_no_issue_markers_or_machine_paths(marker):
    bad = []
    for rel in _scanned_files():
        path = import_graph.ROOT / rel
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if marker in line:
                bad.append(f"{rel}:{number}")
    assert not bad, (f"{FORBIDDEN_TEXT[marker]} {marker!r} in {bad}; drop it (paths: use a "
                     "relative path, $HOME or a placeholder such as /tmp/data).")
