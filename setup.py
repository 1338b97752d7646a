"""Packaging for eb_tf: Early-Bird tickets for tf_keras / TensorFlow Model Optimization.

Install for development (the README's command):

    pip install -e .[test]

Installs the `eb_tf` package, the `binaries` package (the absl faces) and the
console scripts of CONSOLE_SCRIPTS, so `eb-train --config=... --workdir=...` runs from
any directory and is the same program as `python -m binaries.eb_train ...` from the
project root. `configs` is installed too: several config files import their siblings
(`from configs import quickstart`), which a console script, whose sys.path lacks the
working directory, could not do otherwise. The version is read from eb_tf/version.py.
"""
import os
import re

import setuptools

_HERE = os.path.dirname(os.path.abspath(__file__))

# name = binaries.<module>:run; each `run()` is `python -m binaries.<module>`.
CONSOLE_SCRIPTS = [
    "eb-train = binaries.eb_train:run",
    "eb-search = binaries.eb_search:run",
    "eb-prune = binaries.eb_prune:run",
    "eb-retrain = binaries.eb_retrain:run",
    "eb-export = binaries.eb_export:run",
    "eb-tune = binaries.eb_tune:run",
    "eb-bench = binaries.eb_bench:run",
]


def _version() -> str:
    """`__version__` of eb_tf/version.py, read as text (importing eb_tf needs TensorFlow)."""
    with open(os.path.join(_HERE, "eb_tf", "version.py"), encoding="utf-8") as f:
        match = re.search(r"^__version__ = [\"']([^\"']+)[\"']", f.read(), re.MULTILINE)
    if not match:
        raise RuntimeError("eb_tf/version.py has no `__version__ = \"X.Y.Z\"` line")
    return match.group(1)


INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tf-keras>=2.21,<2.22",
    "tensorflow-model-optimization>=0.8,<0.9",
    "tensorflow-datasets>=4.9",
    "keras-tuner>=1.4.8,<1.5",
    "absl-py>=1.4",
    "ml-collections>=1.0",
    "tensorboard>=2.20",
    "ai-edge-litert>=2.0",
    "matplotlib>=3.8",
    # The embedded offline dataset (8x8 digits) ships inside scikit-learn.
    "scikit-learn>=1.4",
    "numpy>=1.26",
    "pillow>=10.0",
]

TEST_REQUIRES = [
    "pytest>=8.0",
    "pytest-xdist>=3.5",
    "hypothesis>=6.100",
]

setuptools.setup(
    name="eb_tf",
    version=_version(),
    description="Early-Bird lottery tickets for tf_keras: find, draw and retrain pruned "
    "networks at a fraction of the training cost.",
    long_description=open(os.path.join(_HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["eb_tf", "eb_tf.*", "binaries", "configs"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    license="Apache-2.0",
)
