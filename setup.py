"""Packaging for eb_tf: Early-Bird tickets for tf_keras / TensorFlow Model Optimization.

Install for development (the README's command):

    pip install -e .[test]

Only the `eb_tf` package is installed; `binaries/` and `configs/` are run from the
project root (`python -m binaries.eb_train ...`) and are not site-packages.
"""
import setuptools

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
    version="0.1.0",
    description="Early-Bird lottery tickets for tf_keras: find, draw and retrain pruned "
    "networks at a fraction of the training cost.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["eb_tf", "eb_tf.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
    license="Apache-2.0",
)
