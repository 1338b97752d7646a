"""Network slimming on BatchNorm: find the scoring BN layers, read gammas, add L1 / decay.

Finds the BN layers whose gammas score channels (through tfmot wrappers and
nested models) and reads their gammas. Mask keys are the BN layer's own name, or
`outer/inner` for a BN inside a nested model.

Example:

    from eb_tf.sparsity import batchnorm
    for ref in batchnorm.bn_layers(model):
        print(ref.key, ref.layer.gamma.shape)
    gammas = batchnorm.gammas(model)      # {"bn1": np.ndarray, ...}
    model = batchnorm.add_bn_l1(model, strength=1e-4)     # L1 on gammas, in the configs
    masks = batchnorm.channel_masks(model, 0.5)           # {"bn1": bool array, ...}
"""
import dataclasses
import math
import warnings
from typing import Dict, Iterable, List, Optional

import numpy as np

from eb_tf.sparsity import masks as masks_lib
from eb_tf.compat import BatchNormalizationBase, check_tf_keras_model, keras, tf


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
    for ref in refs:
        if not ref.layer.built:
            raise ValueError(f"{where}: BN layer {ref.key!r} is not built yet; call the model "
                             "on data (or build it with an input shape) first.")
    # One concatenation, one device-to-host copy (cheap per epoch even on a GPU).
    flat = tf.concat([ref.gamma if ref.gamma.dtype == tf.float32 else
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

    Example:
      >>> masks = eb_tf.channel_masks(model, 0.5)      # {"bn1": array([True, False, ...])}

    Raises:
      ValueError: no candidate BN layer, NaN gammas, ratio outside (0, 1), bad scope.
    """
    check_tf_keras_model(model, "eb_tf.channel_masks")
    return masks_lib.masks_from_gammas(gammas(model, where="eb_tf.channel_masks"), ratio,
                                       scope=scope, min_channels=min_channels, exclude=exclude)


def add_bn_l1(model, strength: float = 1e-4, exclude: Optional[Iterable[str]] = None):
    """A clone of `model` whose candidate BN layers carry the L1(`strength`) gamma penalty.

    Network slimming: the loss gains strength * sum|gamma|, whose subgradient is
    strength * sign(gamma). The regulariser lives in the layer configs, so it survives
    clone, save/load and quantize (setting `gamma_regularizer` on a built layer adds no
    loss). Weights, BN moving statistics and trainable flags are copied; compile the
    returned model. Idempotent: applying it twice replaces the L1 part rather than
    doubling it; an existing L2 part (`add_weight_decay`) is kept (L1L2).

    Args:
      model: a functional or Sequential tf_keras model (nested models are handled).
      strength: the L1 coefficient s >= 0 (0 removes the L1 part); paper: 1e-4.
      exclude: BN keys or fnmatch patterns to leave without L1.

    Example:
      >>> model = eb_tf.add_bn_l1(model, strength=1e-4)
      >>> model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")

    Raises:
      ValueError: subclassed or Keras 3 model, no trainable BN layer with scale=True,
        strength < 0, an `exclude` entry matching no layer.
    """
    where = "eb_tf.add_bn_l1"
    check_tf_keras_model(model, where)
    strength = _check_coefficient(strength, "strength")
    refs = bn_layers(model, where=where)
    if not refs:
        raise ValueError(f"{where}: model {model.name!r} has no trainable BatchNormalization "
                         "layer with scale=True to put the L1 penalty on.")
    keys = set(masks_lib.select_keys([r.key for r in refs], exclude))
    targets = {id(r.layer) for r in refs if r.key in keys}

    def edit(layer, trainable):
        del trainable  # candidacy (trainable, scale) was decided by bn_layers
        return {"gamma_regularizer": {"l1": strength}} if id(layer) in targets else {}

    return _clone_with_regularizers(model, edit, where)


def add_weight_decay(model, weight_decay: float = 1e-4):
    """A clone of `model` with PyTorch-style coupled weight decay as L2(weight_decay / 2).

    SGD's coupled decay adds weight_decay * w to every gradient; the same comes from
    the loss term (weight_decay / 2) * sum(w^2) on every weight of every trainable layer
    (kernel, bias, depthwise, pointwise, gamma, beta, ...: each `*_regularizer` of the
    layer config except the activity one). An existing L1 on gamma (`add_bn_l1`) is kept
    (L1L2). Idempotent; weights are copied as in `add_bn_l1`.

    Args:
      model: a functional or Sequential tf_keras model.
      weight_decay: the decay wd >= 0 (0 removes the L2 part); paper: 1e-4.

    Example:
      >>> model = eb_tf.add_weight_decay(eb_tf.add_bn_l1(model), weight_decay=1e-4)

    Raises:
      ValueError: subclassed or Keras 3 model, weight_decay < 0.
    """
    where = "eb_tf.add_weight_decay"
    check_tf_keras_model(model, where)
    l2 = _check_coefficient(weight_decay, "weight_decay") / 2.0
    undecayed = []

    def edit(layer, trainable):
        if not trainable or not layer.trainable_weights:
            return {}
        slots = [k for k in layer.get_config() if k.endswith("_regularizer")
                 and k != "activity_regularizer"]
        if not slots:
            undecayed.append(layer.name)
        return {k: {"l2": l2} for k in slots}

    out = _clone_with_regularizers(model, edit, where)
    if undecayed:
        warnings.warn(f"{where}: layers {undecayed} have trainable weights but no "
                      "*_regularizer argument, so they get no weight decay.", stacklevel=2)
    return out


def _check_coefficient(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, inf), got {value!r}") from None
    if not (math.isfinite(out) and out >= 0.0):
        raise ValueError(f"{name} must be in [0, inf), got {value!r}")
    return out


def _clone_with_regularizers(model, edit, where: str, parent_trainable: bool = True):
    """clone_model with `edit(layer, trainable) -> {config key: {"l1"|"l2": value}}` applied.

    The one mechanism under add_bn_l1 and add_weight_decay: each layer is rebuilt from
    its config with the merged regularisers (inside tfmot wrappers too), nested models
    recursively, then every layer's weights are copied from the original.
    """
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network",
                                                                False):
        raise ValueError(
            f"{where}: model {model.name!r} is a subclassed model "
            f"({type(model).__name__}), which cannot be cloned to carry the regulariser in "
            "its layer configs. Build it with the functional API or keras.Sequential; "
            "the EarlyBird callback itself works with any model.")
    pairs = []
    trainable_here = parent_trainable and model.trainable

    def clone_layer(layer):
        inner = unwrap(layer)
        if isinstance(inner, keras.Model):
            if inner is not layer:
                raise ValueError(f"{where}: nested model {inner.name!r} inside wrapper "
                                 f"{layer.name!r} is not supported; apply {where} first.")
            return _clone_with_regularizers(inner, edit, where, trainable_here)
        config = layer.get_config()
        target, walk = config, layer
        while walk is not inner:
            target, walk = target["layer"]["config"], walk.layer
        trainable = trainable_here and layer.trainable and inner.trainable
        for key, parts in edit(inner, trainable).items():
            target[key] = _merged_regularizer(target.get(key), parts, where,
                                              f"{inner.name}.{key}")
        try:
            new = layer.__class__.from_config(config)
        except Exception as e:  # a custom layer or wrapper without a registered scope
            raise ValueError(f"{where}: cannot rebuild layer {layer.name!r} "
                             f"({type(layer).__name__}) from its config ({e}). Apply "
                             f"{where} before wrapping/quantizing the model, or call it "
                             "inside the custom-object scope of that layer.") from e
        pairs.append((layer, new))
        return new

    return clone_with_weights(model, clone_layer, pairs)


def clone_with_weights(model, clone_layer, pairs):
    """`keras.models.clone_model(model, clone_layer)` with the weights copied.

    `clone_layer` appends `(old, new)` to `pairs` for every layer it rebuilds; after
    the clone, each new layer gets its old layer's weights (BN moving statistics too).
    """
    clone = keras.models.clone_model(model, clone_function=clone_layer)
    if model.built and not clone.built:
        clone.build(model.input_shape)
    for old, new in pairs:
        if old.weights:
            new.set_weights(old.get_weights())
    if not model.trainable:  # the setter recurses: only a frozen model needs it
        clone.trainable = False
    return clone


def _merged_regularizer(existing, parts: Dict[str, float], where: str, slot: str):
    """Serialised L1/L2/L1L2 of `existing` with the l1 or l2 coefficient replaced."""
    reg = keras.regularizers.get(existing)
    coef = {"l1": 0.0, "l2": 0.0}
    if reg is not None:
        if not isinstance(reg, (keras.regularizers.L1, keras.regularizers.L2,
                                keras.regularizers.L1L2)):
            raise ValueError(f"{where}: {slot} already holds a {type(reg).__name__} "
                             "regulariser, which cannot be combined with L1/L2; remove it "
                             "first.")
        for name in coef:
            coef[name] = float(getattr(reg, name, 0.0))
    coef.update(parts)
    if coef["l1"] and coef["l2"]:
        new = keras.regularizers.L1L2(l1=coef["l1"], l2=coef["l2"])
    elif coef["l1"]:
        new = keras.regularizers.L1(coef["l1"])
    elif coef["l2"]:
        new = keras.regularizers.L2(coef["l2"])
    else:
        return None
    return keras.regularizers.serialize(new)
