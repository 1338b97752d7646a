"""BUILD must name every module, test and binary that exists, and nothing else.

Bazel cannot fetch its Python rules offline here, so this test keeps BUILD honest.
"""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKED_DIRS = ("eb_tf", "binaries", "configs", "tests")


def _named_in_build():
    text = (ROOT / "BUILD").read_text()
    return set(re.findall(r'"([A-Za-z0-9_./-]+\.py)"', text))


def _existing():
    return {str(p.relative_to(ROOT)) for d in CHECKED_DIRS for p in (ROOT / d).rglob("*.py")
            if "__pycache__" not in p.parts}


def test_build_names_every_python_file():
    missing = sorted(_existing() - _named_in_build())
    assert not missing, f"BUILD does not name: {missing}"


def test_build_names_no_missing_file():
    stale = sorted(_named_in_build() - _existing())
    assert not stale, f"BUILD names files that do not exist: {stale}"


def test_every_test_file_has_a_py_test_target():
    text = (ROOT / "BUILD").read_text()
    targets = set(re.findall(r'py_test\(\s*name = "([a-z0-9_]+)",\s*srcs = \["(tests/[a-z0-9_]+\.py)"\]',
                             text))
    test_files = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("*_test.py")}
    assert {src for _, src in targets} == test_files
