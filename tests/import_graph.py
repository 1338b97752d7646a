"""The project's import graph, read with `ast`, and the Bazel BUILD generated from it.

`graph()` parses every .py file under eb_tf/, binaries/, configs/ and tests/ (nothing is
imported or run) and returns one `Module` per file with its `Import`s: real
`import`/`from ... import` statements, module-level and inside functions alike
(docstrings are not code). `from pkg import name` resolves to `pkg.name` when that is a
module of the project, else to `pkg`. A package `__init__` that loads names on first use
through `_LAZY = {name: module}` / `_LAZY_MODULES = (submodule, ...)` (see
eb_tf/__init__.py) gets those modules as function-level imports too, since its
`__getattr__` imports them.

The BUILD at the root is generated from the graph; do not edit it by hand:

    python -m tests.import_graph --write   # rewrites BUILD
    python -m tests.import_graph --check   # exits 1 with a diff if BUILD is stale
"""
import argparse
import ast
import dataclasses
import difflib
import os
import pathlib
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("eb_tf", "binaries", "configs", "tests")
FIX = "run python -m tests.import_graph --write"


@dataclasses.dataclass(frozen=True)
class Import:
    """One imported module, as one statement of the importing file names it.

    Attributes:
      target: the dotted module imported (`eb_tf.pruning.flops`, `tensorflow`...).
      line: the statement's line number.
      in_function: whether the statement runs inside a function (not at import time).
      private: the `_private` names (not submodules) it imports (`from m import _x`);
        dunders such as `__version__` excluded.
      statement: the statement's source, for messages.
      project: whether `target` is a module of this project.
    """
    target: str
    line: int
    in_function: bool
    private: Tuple[str, ...]
    statement: str
    project: bool


@dataclasses.dataclass(frozen=True)
class Module:
    """One .py file: `name` (`eb_tf.pruning` for eb_tf/pruning/__init__.py), `path`, imports."""
    name: str
    path: str
    imports: Tuple[Import, ...]
    runs_as_script: bool = False  # has a top-level `if __name__ == "__main__":`

    @property
    def deps(self) -> List[str]:
        """The project modules it imports (module- or function-level), sorted, without itself."""
        return sorted({i.target for i in self.imports if i.project and i.target != self.name})


def module_name(path: str) -> str:
    """`eb_tf/pruning/__init__.py` -> `eb_tf.pruning`; `eb_tf/pruning/flops.py` -> `...flops`."""
    parts = list(pathlib.PurePosixPath(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(root: pathlib.Path = ROOT) -> List[str]:
    """Every .py file under PACKAGES, relative to `root`, sorted."""
    return sorted(str(p.relative_to(root).as_posix()) for d in PACKAGES
                  for p in (root / d).rglob("*.py") if "__pycache__" not in p.parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Collector(ast.NodeVisitor):
    """Collects the import statements of one file, noting which run inside a function."""

    def __init__(self, name: str, is_package: bool, modules: set):
        self.package = name if is_package else name.rpartition(".")[0]
        self.modules = modules
        self.depth = 0
        self.found: List[Import] = []

    def _add(self, target, node, private=(), statement=None, lazy=False):
        project = target.split(".")[0] in PACKAGES
        self.found.append(Import(target, node.lineno, lazy or self.depth > 0, tuple(private),
                                 statement or ast.unparse(node), project))

    def visit_FunctionDef(self, node):  # pylint: disable=invalid-name
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):  # pylint: disable=invalid-name
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node):  # pylint: disable=invalid-name
        base = node.module or ""
        if node.level:  # relative: `from . import x`, `from ..a import b`
            parts = self.package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
        names = [a.name for a in node.names]
        for name in names:
            if f"{base}.{name}" in self.modules:
                self._add(f"{base}.{name}", node)
        plain = [n for n in names if f"{base}.{n}" not in self.modules]
        if plain:
            self._add(base, node, [n for n in plain if _is_private(n)])

    def visit_Assign(self, node):  # pylint: disable=invalid-name
        """`_LAZY = {name: module}` / `_LAZY_MODULES = (sub, ...)` at module level."""
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if self.depth or not {"_LAZY", "_LAZY_MODULES"} & set(names):
            return
        value = node.value
        items = value.values if isinstance(value, ast.Dict) else getattr(value, "elts", [])
        for item in items:
            if isinstance(item, ast.Constant) and isinstance(item.value, str):
                for target in (item.value, f"{self.package}.{item.value}"):
                    if target in self.modules:
                        self._add(target, node, statement=f"{names[0]}: {item.value!r}", lazy=True)
                        break


def _runs_as_script(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
               and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
               for node in tree.body)


def graph(root: pathlib.Path = ROOT) -> Dict[str, Module]:
    """Parses every project file under `root`; returns {module name: Module}."""
    files = python_files(root)
    names = {module_name(f): f for f in files}
    modules = {}
    for name, path in sorted(names.items()):
        collector = _Collector(name, path.endswith("__init__.py"), set(names))
        tree = ast.parse((root / path).read_text(), filename=path)
        collector.visit(tree)
        modules[name] = Module(name, path, tuple(collector.found), _runs_as_script(tree))
    return modules


# ---------------------------------------------------------------- BUILD

_HEADER = """\
# Bazel targets of eb_tf, generated by tests/import_graph.py from the real imports: do not
# edit by hand, run `python -m tests.import_graph --write` (tests/build_test.py checks it).
# One py_library per module of eb_tf/ and configs/ and per test helper, one py_binary per
# binaries/*.py, one py_test per tests/**/*_test.py. A target is named after its module's
# dotted path with "_" for "." (eb_tf/pruning/flops.py: eb_tf_pruning_flops); its deps are
# the project modules it imports, module- or function-level. Third-party packages
# (tensorflow, tf_keras, tensorflow_model_optimization...) come from the environment.
load("@rules_python//python:defs.bzl", "py_binary", "py_library", "py_test")

package(default_visibility = ["//visibility:public"])
"""


def target(module: str) -> str:
    """The BUILD target of a module: its dotted name with underscores."""
    return module.replace(".", "_")


def rule(module: Module) -> str:
    """`py_library`, `py_binary` or `py_test`, from where the file lives.

    A file of binaries/ is a binary when it runs as a script (`if __name__ ==
    "__main__":`); the others there (the shared flags helper) are libraries.
    """
    base = pathlib.PurePosixPath(module.path).name
    if module.path.startswith("binaries/") and module.runs_as_script:
        return "py_binary"
    if module.path.startswith("tests/") and base.endswith("_test.py"):
        return "py_test"
    return "py_library"


def _target_text(module: Module) -> str:
    kind = rule(module)
    lines = [f"{kind}(", f'    name = "{target(module.name)}",']
    if module.path.startswith("tests/") and kind == "py_library":
        lines.append("    testonly = True,")
    lines.append(f'    srcs = ["{module.path}"],')
    if kind != "py_library":
        lines.append(f'    main = "{module.path}",')
    if module.deps:
        lines += ["    deps = ["] + [f'        ":{target(d)}",' for d in module.deps] + ["    ],"]
    return "\n".join(lines + [")"])


def build_text(modules: Optional[Dict[str, Module]] = None) -> str:
    """The BUILD file the graph implies."""
    modules = graph() if modules is None else modules
    targets = [target(m) for m in modules]
    clashes = sorted({t for t in targets if targets.count(t) > 1})
    if clashes:
        raise ValueError(f"Modules share the BUILD target names {clashes}; rename one of them.")
    parts = [_HEADER]
    for package in PACKAGES:
        parts.append(f"# {'-' * 64} {package}\n")
        parts += [_target_text(m) + "\n" for m in modules.values()
                  if m.name.split(".")[0] == package]
    return "\n".join(parts)


def stale_diff(path: pathlib.Path = ROOT / "BUILD") -> str:
    """A unified diff from `path` to the generated BUILD; empty if it is up to date."""
    current = path.read_text() if path.exists() else ""
    return "".join(difflib.unified_diff(current.splitlines(True), build_text().splitlines(True),
                                        "BUILD (on disk)", "BUILD (generated)"))


def write_build(path: pathlib.Path = ROOT / "BUILD") -> None:
    """Writes the generated BUILD atomically (a temp file beside it, then os.replace)."""
    text = build_text()
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".BUILD.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    """`--write` rewrites BUILD; `--check` prints the diff and returns 1 if BUILD is stale."""
    parser = argparse.ArgumentParser(prog="python -m tests.import_graph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="rewrite BUILD")
    group.add_argument("--check", action="store_true", help="exit 1 with a diff if BUILD is stale")
    args = parser.parse_args(argv)
    if args.write:
        write_build()
        return 0
    diff = stale_diff()
    if diff:
        sys.stdout.write(diff + f"\nBUILD is stale: {FIX}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
