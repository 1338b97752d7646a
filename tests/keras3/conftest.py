"""Keras 3 tests: a clean Keras 3 session and fixed seeds per test (tf_keras's are reset
by tests/conftest.py)."""
import pytest


@pytest.fixture(autouse=True)
def _fresh_keras3_session():
    from eb_tf.compat import keras3
    keras3.backend.clear_session()
    keras3.utils.set_random_seed(0)
    yield
