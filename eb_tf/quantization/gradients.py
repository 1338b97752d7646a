"""Gradient and error quantisation with stochastic rounding (the "G" and "E" of WAGE).

tfmot fake-quantises weights and activations in the forward pass only. Low-precision
training (WAGE, Wu et al. 2018; the 8-bit Early-Bird search of You et al. 2020) also
quantises what flows backwards: the errors (gradients w.r.t. layer outputs) and the
weight gradients. Both are done here as identity ops whose custom gradient is
quantised, so they slot into any graph, and `model.fit` needs no special optimizer.

A tensor is quantised per tensor to `bits` signed levels scaled by its largest
magnitude, with stochastic rounding, which is unbiased: E[q(x)] = x.

Example:

    from eb_tf.quantization import gradients as grad_quant
    y = grad_quant.quantize_backward(x, bits=8)      # forward: y == x
    # backward: dL/dx = quantize_tensor(dL/dy, 8), on the grid max|dL/dy| / 127 * k
"""
from typing import Optional

from eb_tf.compat import tf

__all__ = ["MIN_BITS", "MAX_BITS", "check_bits", "grid_step", "quantize_tensor",
           "quantize_backward"]

MIN_BITS = 2
MAX_BITS = 16


def check_bits(bits, name: str, where: str, allow_none: bool = False) -> Optional[int]:
    """Validates a bit width: an int in [MIN_BITS, MAX_BITS] (or None if allowed).

    Raises:
      ValueError: naming `name`, the value and the allowed range.
    """
    if bits is None and allow_none:
        return None
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ValueError(f"{where}: {name} must be an int in [{MIN_BITS}, {MAX_BITS}]"
                         f"{' or None' if allow_none else ''}, got {bits!r}.")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"{where}: {name}={bits} is out of range; use {MIN_BITS} <= {name} <= "
            f"{MAX_BITS} (fake quantisation below 2 bits has no sign and magnitude).")
    return bits


def _levels(bits: int) -> float:
    return float(2 ** (bits - 1) - 1)


def grid_step(x, bits: int):
    """The quantisation step of `quantize_tensor(x, bits)`: max|x| / (2^(bits-1) - 1)."""
    amax = tf.reduce_max(tf.abs(tf.cast(x, tf.float32)))
    return amax / _levels(bits)


def quantize_tensor(x, bits: int, stochastic: bool = True, seed: Optional[int] = None):
    """Quantises `x` to a signed grid of 2^(bits-1) - 1 levels per sign.

    The grid step is max|x| / (2^(bits-1) - 1) (one scale per tensor, recomputed
    every call, like WAGE's shift-free variant). With `stochastic=True` each value
    rounds up with probability equal to its fractional part, so the result is an
    unbiased estimate of `x`; otherwise it rounds to nearest.

    Args:
      x: a float tensor (any dtype; computed in float32, returned in x's dtype).
      bits: bit width in [2, 16].
      stochastic: stochastic (True) or nearest (False) rounding.
      seed: op seed for the uniform noise (the global seed applies too).

    Returns:
      A tensor of x's shape and dtype whose values are integer multiples of the step.
      An all-zero tensor stays zero; NaN/inf propagate.
    """
    check_bits(bits, "bits", "quantize_tensor")
    x = tf.convert_to_tensor(x)
    x32 = tf.cast(x, tf.float32)
    levels = _levels(bits)
    amax = tf.reduce_max(tf.abs(x32))
    step = amax / levels  # 0 for an all-zero tensor, and when a denormal max underflows
    scale = tf.where(step > 0.0, step, tf.ones_like(step))
    y = x32 / scale
    if stochastic:
        y = tf.floor(y + tf.random.uniform(tf.shape(y), dtype=tf.float32, seed=seed))
    else:
        y = tf.round(y)
    y = tf.clip_by_value(y, -levels, levels)
    return tf.cast(y * scale, x.dtype)


def quantize_backward(x, bits: int, stochastic: bool = True):
    """Identity in the forward pass; quantises the incoming gradient in the backward pass.

    Put it on a layer output to quantise the errors flowing back into that layer, or on
    a weight read to quantise that weight's gradient.

    Args:
      x: a float tensor.
      bits: bit width of the gradient, in [2, 16].
      stochastic: stochastic rounding (the default) or round-to-nearest.

    Returns:
      `x` (a new tensor with the same value).
    """
    check_bits(bits, "bits", "quantize_backward")

    @tf.custom_gradient
    def _identity(t):
        def grad(dy):
            return quantize_tensor(dy, bits, stochastic=stochastic)
        return tf.identity(t), grad

    return _identity(x)
