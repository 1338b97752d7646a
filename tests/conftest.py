"""Shared test set-up: quiet TensorFlow, deterministic seeds, hypothesis profile."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hypothesis  # noqa: E402
import pytest  # noqa: E402

# TF calls blow hypothesis's 200 ms default deadline; keep example counts modest so
# the whole suite stays within CI's budget on 2 cores.
hypothesis.settings.register_profile(
    "eb_tf", deadline=None, max_examples=25,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "eb_tf"))


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Each test starts with a clean Keras name scope and fixed seeds."""
    from eb_tf.compat import keras
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
