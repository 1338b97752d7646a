"""The BatchNorm layers whose gammas score channels: find them, read them, mask them.

Finds the BN layers whose gammas score channels (through tfmot wrappers and
nested models), reads their gammas and draws channel masks from them. Mask keys are
the BN layer's own name, or `outer/inner` for a BN inside a nested model. Models of
either Keras (tf_keras, Keras 3) are read the same way.

Example:

    from eb_tf.sparsity import batchnorm
    for ref in batchnorm.bn_layers(model):
        print(ref.key, ref.layer.gamma.shape)
    gammas = batchnorm.gammas(model)      # {"bn1": np.ndarray, ...}
    masks = batchnorm.channel_masks(model, 0.5)           # {"bn1": bool array, ...}
"""
import dataclasses
from typing import Dict, Iterable, List, Optional

import numpy as np

from eb_tf.compat import BN_CLASSES, check_model, keras, keras3, tf
from eb_tf.sparsity import masks as masks_lib


_WRAPPERS = (keras.layers.Wrapper, keras3.layers.Wrapper)
_MODELS = (keras.Model, keras3.Model)


@dataclasses.dataclass(frozen=True)
class BNRef:
    """One BatchNorm layer of a model, as seen by masks and the pruner.

    Attributes:
      key: the mask key: the BN's own name, `outer/inner` inside nested models.
      layer: the BatchNormalization layer itself (unwrapped).
      wrapper: the tfmot (or other `keras.layers.Wrapper`) layer holding it, if any.
      path: the names of the enclosing models, outermost first (empty at top level).
      trainable: the layer and every model around it are trainable.
    """
    key: str
    layer: object
    wrapper: Optional[object] = None
    path: tuple = ()
    trainable: bool = True

    @property
    def gamma(self):
        """The gamma variable (a tf.Variable; replicated under tf.distribute)."""
        return self.layer.gamma


def unwrap(layer):
    """The innermost layer of a chain of `keras.layers.Wrapper`s (tfmot wrappers)."""
    while isinstance(layer, _WRAPPERS) and hasattr(layer, "layer"):
        layer = layer.layer
    return layer


def is_candidate(bn) -> bool:
    """A BN scores channels iff it is trainable and has a learned scale (gamma)."""
    return bool(bn.trainable and bn.scale)


def bn_layers(model, include_frozen: bool = False, where: str = "bn_layers") -> List[BNRef]:
    """All BatchNorm layers of `model`, in layer order, recursing into nested models.

    Args:
      model: a tf_keras or Keras 3 model (functional, Sequential, subclassed or
        tfmot-wrapped).
      include_frozen: also return BN layers that are frozen or have `scale=False`,
        which are never mask candidates.
      where: the public function's name for error messages.

    Returns:
      A list of `BNRef`, keys unique.
    """
    check_model(model, where)
    refs: List[BNRef] = []
    _collect(model, (), refs, include_frozen, model.trainable)
    return refs


def _collect(model, path, refs, include_frozen, parent_trainable):
    for layer in model.layers:
        inner = unwrap(layer)
        if isinstance(inner, _MODELS):
            _collect(inner, path + (inner.name,), refs, include_frozen,
                     parent_trainable and inner.trainable)
        elif isinstance(inner, BN_CLASSES):
            trainable = parent_trainable and (layer.trainable and inner.trainable)
            if include_frozen or (trainable and inner.scale):
                key = "/".join(path + (inner.name,))
                refs.append(BNRef(key, inner, layer if layer is not inner else None, path,
                                  trainable))


def no_candidates_message(model, where: str) -> str:
    """Why `model` has no BN layer to score channels with, and what to do about it."""
    refs = bn_layers(model, include_frozen=True, where=where)
    if not refs:
        return (f"{where}: model {model.name!r} has no BatchNormalization layer, so there are "
                "no channel scores (gammas) to draw masks from. Add BatchNormalization "
                "after the convolutions.")
    off = [r.key for r in refs if r.trainable and not r.layer.scale]
    frozen = [r.key for r in refs if not r.trainable]
    parts = []
    if off:
        parts.append(f"{len(off)} have scale=False (no gamma, e.g. {off[0]!r}): turn it on "
                     "with eb_tf.add_bn_l1(model, enable_scale=True)")
    if frozen:
        parts.append(f"{len(frozen)} are frozen (trainable=False, e.g. {frozen[0]!r}): "
                     "unfreeze them")
    return (f"{where}: model {model.name!r} has {len(refs)} BatchNormalization layers but "
            f"none is trainable with scale=True, so none scores channels: "
            f"{'; '.join(parts)}.")


def gammas(model, where: str = "gammas") -> Dict[str, np.ndarray]:
    """{mask key: gamma as a float32 NumPy array} of every candidate BN layer.

    Raises:
      ValueError: if the model has no trainable BN layer with `scale=True`, or a gamma
        holds NaN/inf (a diverged run: lower the learning rate).
    """
    refs = bn_layers(model, where=where)
    if not refs:
        raise ValueError(no_candidates_message(model, where))
    for ref in refs:
        if not ref.layer.built:
            raise ValueError(f"{where}: BN layer {ref.key!r} is not built yet; call the model "
                             "on data (or build it with an input shape) first.")
    # One concatenation, one device-to-host copy (cheap per epoch even on a GPU).
    flat = tf.concat([ref.gamma if tf.as_dtype(ref.gamma.dtype) == tf.float32 else
                      tf.cast(ref.gamma, tf.float32) for ref in refs], axis=0).numpy()
    sizes = [int(ref.gamma.shape[0]) for ref in refs]
    out = dict(zip([ref.key for ref in refs], np.split(flat, np.cumsum(sizes)[:-1])))
    if not np.isfinite(flat).all():
        for key, value in out.items():
            if not np.all(np.isfinite(value)):
                raise ValueError(
                    f"{where}: BN layer {key!r} has non-finite gammas "
                    f"({int(np.sum(~np.isfinite(value)))} of {value.size} are NaN/inf); "
                    "training diverged. Lower the learning rate or the L1 strength.")
    return out


def channel_masks(model, ratio: float, scope: str = "global", min_channels: int = 1,
                  exclude: Optional[Iterable[str]] = None) -> Dict[str, np.ndarray]:
    """The network-slimming channel mask of `model` for pruning ratio `ratio`.

    `masks.masks_from_gammas` over `gammas(model)`: candidates are the trainable BN
    layers with `scale=True`; frozen ones and `exclude`d keys are skipped.

    Args:
      model: a tf_keras or Keras 3 model (nested and tfmot-wrapped BNs are found).
      ratio: the fraction of channels to prune, in (0, 1).
      scope: "global" (one |gamma| threshold over all BNs) or "layer" (the ratio
        within each BN).
      min_channels: every BN keeps at least min(min_channels, its channels), in
        both scopes and at any ratio (0.99 included); the default 1 never gives an
        all-False mask. `eb_tf.prune` uses masks as given and applies no minimum.
      exclude: BN keys or fnmatch patterns left out of the result (kept whole).

    Example:
      >>> masks = eb_tf.channel_masks(model, 0.5)      # {"bn1": array([True, False, ...])}

    Raises:
      ValueError: no candidate BN layer, NaN gammas, ratio outside (0, 1), bad scope,
        min_channels not an int >= 0.
    """
    check_model(model, "eb_tf.channel_masks")
    return masks_lib.masks_from_gammas(gammas(model, where="eb_tf.channel_masks"), ratio,
                                       scope=scope, min_channels=min_channels, exclude=exclude)
