"""Network-slimming regularisers: L1 on the BN gammas and coupled weight decay.

`add_bn_l1` puts the L1 penalty s * sum |gamma| of network slimming on every scoring
BN layer (`eb_tf.sparsity.batchnorm.bn_layers`); `add_weight_decay` adds PyTorch's
coupled weight decay (an L2 penalty of wd / 2) on every trainable weight. Both return a
clone with the weights copied, so they compose in either order and apply once only.
`clone_with_weights` is the clone-and-copy helper they share with `sync_batchnorm`.
Models of either Keras (tf_keras, Keras 3) are cloned with their own Keras.

Example:

    from eb_tf.sparsity import regularizers
    model = regularizers.add_bn_l1(model, strength=1e-4)
    model = regularizers.add_weight_decay(model, weight_decay=1e-4)
"""
import math
import warnings
from typing import Dict, Iterable, Optional

from absl import logging

from eb_tf.compat import Keras3Functional, check_model, is_keras3_operation
from eb_tf.sparsity import masks as masks_lib
from eb_tf.sparsity.batchnorm import bn_layers, no_candidates_message, unwrap

__all__ = ["add_bn_l1", "add_weight_decay", "clone_with_weights"]


def add_bn_l1(model, strength: float = 1e-4, exclude: Optional[Iterable[str]] = None,
              enable_scale: bool = True):
    """A clone of `model` whose candidate BN layers carry the L1(`strength`) gamma penalty.

    Network slimming: the loss gains strength * sum|gamma|, whose subgradient is
    strength * sign(gamma). The regulariser lives in the layer configs, so it survives
    clone, save/load and quantize (setting `gamma_regularizer` on a built layer adds no
    loss). Weights, BN moving statistics and trainable flags are copied; compile the
    returned model. Idempotent: applying it twice replaces the L1 part rather than
    doubling it; an existing L2 part (`add_weight_decay`) is kept (L1L2).

    Args:
      model: a functional or Sequential model, tf_keras or Keras 3 (nested models are
        handled).
      strength: the L1 coefficient s >= 0 (0 removes the L1 part); paper: 1e-4.
      exclude: BN keys or fnmatch patterns to leave without L1.
      enable_scale: turn on `scale` (a learned gamma, starting at 1) for the trainable
        BN layers that have it off (InceptionV3 and InceptionResNetV2 build theirs so),
        which makes them searchable; logged. False leaves them without gamma and L1.

    Example:
      >>> model = eb_tf.add_bn_l1(model, strength=1e-4)
      >>> model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")

    Raises:
      ValueError: subclassed model, no trainable BN layer with scale=True
        (or scale=False and enable_scale), strength < 0, an `exclude` entry matching no
        layer.
    """
    where = "eb_tf.add_bn_l1"
    check_model(model, where)
    strength = _check_coefficient(strength, "strength")
    refs = [r for r in bn_layers(model, include_frozen=True, where=where)
            if r.trainable and (r.layer.scale or enable_scale)]
    if not refs:
        raise ValueError(no_candidates_message(model, where))
    keys = set(masks_lib.select_keys([r.key for r in refs], exclude))
    targets = {id(r.layer) for r in refs if r.key in keys}
    turn_on = [r for r in refs if r.key in keys and not r.layer.scale]
    if turn_on:
        logging.info("%s: turned on scale (gamma starts at 1) for %d BatchNormalization "
                     "layers that had scale=False (%s%s); pass enable_scale=False to keep "
                     "them off", where, len(turn_on), ", ".join(r.key for r in turn_on[:5]),
                     " ..." if len(turn_on) > 5 else "")
    switch = {id(r.layer) for r in turn_on}

    def edit(layer, trainable):
        del trainable  # candidacy (trainable, scale) was decided above
        return {"gamma_regularizer": {"l1": strength}} if id(layer) in targets else {}

    return _clone_with_regularizers(
        model, edit, where, configure=lambda layer: {"scale": True} if id(layer) in switch
        else {})


def add_weight_decay(model, weight_decay: float = 1e-4):
    """A clone of `model` with PyTorch-style coupled weight decay as L2(weight_decay / 2).

    SGD's coupled decay adds weight_decay * w to every gradient; the same comes from
    the loss term (weight_decay / 2) * sum(w^2) on every weight of every trainable layer
    (kernel, bias, depthwise, pointwise, gamma, beta, ...: each `*_regularizer` of the
    layer config except the activity one). An existing L1 on gamma (`add_bn_l1`) is kept
    (L1L2). Idempotent; weights are copied as in `add_bn_l1`.

    Args:
      model: a functional or Sequential model, tf_keras or Keras 3.
      weight_decay: the decay wd >= 0 (0 removes the L2 part); paper: 1e-4.

    Example:
      >>> model = eb_tf.add_weight_decay(eb_tf.add_bn_l1(model), weight_decay=1e-4)

    Raises:
      ValueError: subclassed model, weight_decay < 0.
    """
    where = "eb_tf.add_weight_decay"
    check_model(model, where)
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


def _clone_with_regularizers(model, edit, where: str, parent_trainable: bool = True,
                             configure=None):
    """clone_model with `edit(layer, trainable) -> {config key: {"l1"|"l2": value}}` applied.

    The one mechanism under add_bn_l1 and add_weight_decay: each layer is rebuilt from
    its config with the merged regularisers (inside tfmot wrappers too), and with the
    plain config values of `configure(layer) -> {config key: value}`, nested models
    recursively, then every layer's weights are copied from the original (by name
    where `configure` added weights: a new gamma keeps its initial value).
    """
    keras = check_model(model, where)
    if not isinstance(model, (keras.Sequential, Keras3Functional)) and \
            not getattr(model, "_is_graph_network", False):
        raise ValueError(
            f"{where}: model {model.name!r} is a subclassed model "
            f"({type(model).__name__}), which cannot be cloned to carry the regulariser in "
            "its layer configs. Build it with the functional API or keras.Sequential; "
            "the EarlyBird callback itself works with any model.")
    pairs = []
    trainable_here = parent_trainable and model.trainable

    def clone_layer(layer):
        if is_keras3_operation(layer):        # keras.ops.add & co.: no weights, no config
            return layer
        inner = unwrap(layer)
        if isinstance(inner, keras.Model):
            if inner is not layer:
                raise ValueError(f"{where}: nested model {inner.name!r} inside wrapper "
                                 f"{layer.name!r} is not supported; apply {where} first.")
            return _clone_with_regularizers(inner, edit, where, trainable_here, configure)
        config = layer.get_config()
        target, walk = config, layer
        while walk is not inner:
            target, walk = target["layer"]["config"], walk.layer
        trainable = trainable_here and layer.trainable and inner.trainable
        for key, parts in edit(inner, trainable).items():
            target[key] = _merged_regularizer(keras, target.get(key), parts, where,
                                              f"{inner.name}.{key}")
        if configure is not None:
            target.update(configure(inner))
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
    clone = check_model(model, "clone_with_weights").models.clone_model(
        model, clone_function=clone_layer)
    if model.built and not clone.built:
        clone.build(model.input_shape)
    for old, new in pairs:
        if old.weights and len(old.weights) == len(new.weights):
            new.set_weights(old.get_weights())
        elif old.weights:                     # e.g. a BN whose scale was turned on
            by_name = {_short(v): v.numpy() for v in old.weights}
            for var in new.weights:
                if _short(var) in by_name:
                    var.assign(by_name[_short(var)])
    if not model.trainable:  # the setter recurses: only a frozen model needs it
        clone.trainable = False
    return clone


def _short(variable) -> str:
    return variable.name.split("/")[-1].split(":")[0]


def _merged_regularizer(keras, existing, parts: Dict[str, float], where: str, slot: str):
    """Serialised L1/L2/L1L2 (of the model's `keras`) of `existing` with the l1 or l2
    coefficient replaced."""
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
