"""Tests of eb_tf.quantization.gradients: stochastic-rounding quantiser and backward quantisation."""
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest

from eb_tf.compat import tf
from eb_tf.quantization import gradients

_ARRAYS = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                     elements=st.floats(-100, 100, width=32))


@pytest.mark.parametrize("bits", [1, 0, 17, -3, 8.0, True, "8", None])
def test_check_bits_rejects_bad_widths_naming_the_argument(bits):
    with pytest.raises(ValueError, match=r"error_bits.*(2.*16|int)"):
        gradients.check_bits(bits, "error_bits", "f")


def test_check_bits_accepts_range_and_optional_none():
    assert [gradients.check_bits(b, "b", "f") for b in (2, 8, 16)] == [2, 8, 16]
    assert gradients.check_bits(None, "b", "f", allow_none=True) is None


@hypothesis.given(x=_ARRAYS, bits=st.integers(2, 16), stochastic=st.booleans())
def test_quantize_tensor_lands_on_grid_within_one_step(x, bits, stochastic):
    q = gradients.quantize_tensor(x, bits, stochastic=stochastic).numpy()
    levels = 2 ** (bits - 1) - 1
    amax = np.abs(x).max()
    step = amax / levels
    if step == 0:  # all zeros, or a denormal max whose step underflows: no NaN, zeros
        np.testing.assert_array_equal(q, 0.0)
        return
    k = q / step
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)
    assert np.abs(np.round(k)).max() <= levels
    bound = step * (1.0 if stochastic else 0.5)
    assert np.all(np.abs(q - x) <= bound * (1 + 1e-4) + 1e-6)


def test_stochastic_rounding_is_unbiased_on_average():
    n = 200_000
    step = 1.0 / 127
    x = np.full(n, 0.3 * step, np.float32)
    x[0] = 1.0                                   # fixes max|x| so the step is 1/127
    q = gradients.quantize_tensor(x, 8).numpy()[1:]
    assert set(np.unique(np.round(q / step)).tolist()) == {0.0, 1.0}
    sigma = np.sqrt(0.3 * 0.7 / (n - 1)) * step
    assert abs(q.mean() - 0.3 * step) < 5 * sigma
    nearest = gradients.quantize_tensor(x, 8, stochastic=False).numpy()[1:]
    np.testing.assert_array_equal(nearest, 0.0)   # round-to-nearest is biased here


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32])
def test_quantize_tensor_keeps_dtype(dtype):
    x = tf.constant([0.5, -1.0, 0.25], dtype)
    q = gradients.quantize_tensor(x, 4, stochastic=False)
    assert q.dtype == dtype
    np.testing.assert_allclose(tf.cast(q, tf.float32).numpy(), [3 / 7, -1.0, 2 / 7], rtol=1e-2)


def test_grid_step_is_max_over_levels():
    assert float(gradients.grid_step(tf.constant([-2.0, 1.0]), 3)) == pytest.approx(2.0 / 3)


def test_quantize_backward_is_identity_forward_and_quantises_gradient():
    x = tf.Variable(np.linspace(-1, 1, 11, dtype=np.float32))
    upstream = tf.constant(np.random.RandomState(0).randn(11).astype(np.float32))
    with tf.GradientTape() as tape:
        y = gradients.quantize_backward(x, 4)
        loss = tf.reduce_sum(y * upstream)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    grad = tape.gradient(loss, x).numpy()
    step = np.abs(upstream.numpy()).max() / 7
    np.testing.assert_allclose(grad / step, np.round(grad / step), atol=1e-4)
    assert np.all(np.abs(grad - upstream.numpy()) < step + 1e-6)
    assert not np.allclose(grad, upstream.numpy())


def test_quantize_backward_with_16_bits_is_nearly_exact():
    x = tf.Variable(tf.ones(64))
    upstream = tf.constant(np.random.RandomState(1).randn(64).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(gradients.quantize_backward(x, 16) * upstream)
    grad = tape.gradient(loss, x).numpy()
    step = np.abs(upstream.numpy()).max() / (2 ** 15 - 1)
    assert np.abs(grad - upstream.numpy()).max() <= step + 1e-7


def test_quantize_backward_inside_tf_function():
    x = tf.Variable([0.1, -0.7, 0.35])

    @tf.function
    def grad_of(v):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(gradients.quantize_backward(v, 2) * [0.2, 1.0, -0.6])
        return tape.gradient(loss, v)

    grad = grad_of(x).numpy()
    assert set(np.round(grad, 6).tolist()) <= {-1.0, 0.0, 1.0}   # 2 bits: one level
    assert grad[1] == 1.0


@pytest.mark.parametrize("stochastic", [False, True])
def test_denormal_tensor_quantises_to_zero_not_nan(stochastic):
    # max|x| / levels underflows float32 here: the grid step is 0, the output all zeros.
    q = gradients.quantize_tensor(np.array([1e-45, -1e-45], np.float32), 3, stochastic=stochastic)
    np.testing.assert_array_equal(np.abs(q.numpy()), 0.0)
