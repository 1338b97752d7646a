"""BatchNorm layers as the channel scoring of network slimming.

Finds the BN layers whose gammas score channels (through tfmot wrappers and
nested models) and reads their gammas. Mask keys are the BN layer's own name, or
`outer/inner` for a BN inside a nested model.

Example:

    from eb_tf import sparsity
    for ref in sparsity.bn_layers(model):
        print(ref.key, ref.layer.gamma.shape)
    gammas = sparsity.gammas(model)      # {"bn1": np.ndarray, ...}
"""
import dataclasses
from typing import Dict, List, Optional

import numpy as np

from eb_tf.compat import BatchNormalizationBase, check_tf_keras_model, keras


@dataclasses.dataclass(frozen=True)
class BNRef:
    """One BatchNorm layer of a model, as seen by masks and the pruner.

    Attributes:
      key: the mask key: the BN's own name, `outer/inner` inside nested models.
      layer: the BatchNormalization layer itself (unwrapped).
      wrapper: the tfmot (or other `keras.layers.Wrapper`) layer holding it, if any.
      path: the names of the enclosing models, outermost first (empty at top level).
    """
    key: str
    layer: keras.layers.Layer
    wrapper: Optional[keras.layers.Layer] = None
    path: tuple = ()

    @property
    def gamma(self):
        """The gamma variable (a tf.Variable; replicated under tf.distribute)."""
        return self.layer.gamma


def unwrap(layer):
    """The innermost layer of a chain of `keras.layers.Wrapper`s (tfmot wrappers)."""
    while isinstance(layer, keras.layers.Wrapper) and hasattr(layer, "layer"):
        layer = layer.layer
    return layer


def is_candidate(bn) -> bool:
    """A BN scores channels iff it is trainable and has a learned scale (gamma)."""
    return bool(bn.trainable and bn.scale)


def bn_layers(model, include_frozen: bool = False, where: str = "bn_layers") -> List[BNRef]:
    """All BatchNorm layers of `model`, in layer order, recursing into nested models.

    Args:
      model: a tf_keras model (functional, Sequential, subclassed or tfmot-wrapped).
      include_frozen: also return BN layers that are frozen or have `scale=False`,
        which are never mask candidates.
      where: the public function's name for error messages.

    Returns:
      A list of `BNRef`, keys unique.
    """
    check_tf_keras_model(model, where)
    refs: List[BNRef] = []
    _collect(model, (), refs, include_frozen, model.trainable)
    return refs


def _collect(model, path, refs, include_frozen, parent_trainable):
    for layer in model.layers:
        inner = unwrap(layer)
        if isinstance(inner, keras.Model):
            _collect(inner, path + (inner.name,), refs, include_frozen,
                     parent_trainable and inner.trainable)
        elif isinstance(inner, BatchNormalizationBase):
            trainable = parent_trainable and (layer.trainable and inner.trainable)
            if include_frozen or (trainable and inner.scale):
                key = "/".join(path + (inner.name,))
                refs.append(BNRef(key, inner, layer if layer is not inner else None, path))


def gammas(model, where: str = "gammas") -> Dict[str, np.ndarray]:
    """{mask key: gamma as a float32 NumPy array} of every candidate BN layer.

    Raises:
      ValueError: if the model has no trainable BN layer with `scale=True`, or a gamma
        holds NaN/inf (a diverged run: lower the learning rate).
    """
    refs = bn_layers(model, where=where)
    if not refs:
        raise ValueError(
            f"{where}: model {model.name!r} has no trainable BatchNormalization layer with "
            "scale=True, so there are no channel scores (gammas) to draw masks from. "
            "Add BatchNormalization after the convolutions, or unfreeze them.")
    out = {}
    for ref in refs:
        if not ref.layer.built:
            raise ValueError(f"{where}: BN layer {ref.key!r} is not built yet; call the model "
                             "on data (or build it with an input shape) first.")
        value = np.asarray(ref.gamma.numpy(), dtype=np.float32)
        if not np.all(np.isfinite(value)):
            raise ValueError(
                f"{where}: BN layer {ref.key!r} has non-finite gammas "
                f"({int(np.sum(~np.isfinite(value)))} of {value.size} are NaN/inf); training "
                "diverged. Lower the learning rate or the L1 strength.")
        out[ref.key] = value
    return out
