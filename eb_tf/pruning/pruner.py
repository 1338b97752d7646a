"""Structured pruning: `apply_masks` (the masked network) and `prune` (the smaller one).

`apply_masks(model, masks)` copies the model with gamma = beta = 0 on every pruned
BN channel: the reference semantics of network slimming and Early-Bird tickets.
`prune(model, masks)` rebuilds it as a new functional model with the dead channels
physically removed, weights copied from the masked network (BN moving statistics
included), so that in inference

    prune(model, masks)(x) == apply_masks(model, masks)(x)   (to ~1e-6 relative)

Masks that would make an output a constant (every path from the input to it goes
through a BN that keeps no channel the signal reaches it on, e.g. an all-False mask
in a plain conv chain) are an error naming those BNs; a dead branch that rejoins a live
path (an all-False residual branch: the block becomes the identity) is pruned away
with a warning. `prune` never edits the masks it is given, so `min_channels` is not
applied there: it belongs to the functions that draw masks (`eb_tf.channel_masks`,
`EarlyBird`), which guarantee it.

A layer the pruner cannot map (a `Lambda`, a custom layer, a channel shuffle, a nested
model called twice) is a *barrier*: the channel spaces it reads keep every channel,
its outputs keep their widths, the rest of the model is pruned, and one `UserWarning`
names each such layer and the masks it kept from being applied physically (the
values stay masked, so the result is still exact). `prune(..., unknown="error")`
refuses such layers instead.

Which channels die, and where a gather (`ChannelSelect`) is needed, is decided by
`eb_tf.pruning.plan`; which handler a layer gets by `eb_tf.pruning.dispatch`; how each
layer type is sliced by `eb_tf.pruning.handlers`. Models of both Kerases are pruned by
the same passes; the result is a model of the input's Keras (a Keras 3 ticket gathers
with `Keras3ChannelSelect` and calls the same stateless `keras.ops` as the original).

Example:

    import eb_tf
    masks = eb_tf.channel_masks(model, 0.5)          # {BN key: bool array}
    small = eb_tf.prune(model, masks)
    small.compile(...); small.fit(...)
"""
import warnings
from typing import Dict

import numpy as np

from eb_tf.compat import check_model, dtype_name, is_keras3_operation, tf
from eb_tf.pruning import barriers, dispatch, graph, handlers, liveness
from eb_tf.pruning import plan as channel_plan
from eb_tf.pruning.channel_select import channel_select_class
from eb_tf.sparsity import batchnorm

__all__ = ["apply_masks", "prune"]


def apply_masks(model, masks: Dict[str, np.ndarray]):
    """A copy of `model` with gamma = beta = 0 on the pruned channels of each BN.

    Args:
      model: a functional or Sequential model, tf_keras or Keras 3 (nested models are
        fine).
      masks: {BN key (see `eb_tf.bn_layers`): bool array, True = keep}; BN layers
        without a mask are copied unchanged.

    Returns:
      A new, uncompiled model of the same architecture and weights, masks applied.

    Example:

        masked = eb_tf.apply_masks(model, {"bn1": np.array([True, False, True])})

    Raises:
      ValueError: for an unknown mask key, a non-bool mask, a wrong length, or a model
        that `keras.models.clone_model` cannot copy (subclassed models).
    """
    where = "eb_tf.apply_masks"
    keras = check_model(model, where)
    masks, _ = channel_plan.check_masks(model, masks, where)
    try:
        clone = keras.models.clone_model(model)
    except (ValueError, TypeError, NotImplementedError) as e:
        raise ValueError(f"{where}: cannot copy model {model.name!r} "
                         f"({type(model).__name__}): {e}. Use a functional or Sequential "
                         "model.") from e
    clone.set_weights(model.get_weights())
    refs = {r.key: r.layer for r in batchnorm.bn_layers(clone, where=where)}
    for key, mask in masks.items():
        for var in (refs[key].gamma, refs[key].beta):
            if var is not None:
                var.assign(np.where(mask, var.numpy(), 0).astype(dtype_name(var.dtype)))
    return clone


def prune(model, masks: Dict[str, np.ndarray], unknown: str = "barrier"):
    """A new functional model with the channels that `masks` make dead removed.

    A channel is removed where it is zero for every consumer; where some consumers
    still read it (the residual stream of a pre-activation ResNet), the others read
    the stream through a `ChannelSelect` gather placed as early as possible. Add and
    Multiply groups keep a channel while any member needs it; constants left by a
    masked BN (e.g. after a sigmoid) are folded into the next Dense / 1x1 conv bias, or
    the channel is kept. Model inputs and outputs keep their shapes; no channel space
    loses its last channel.

    An all-False mask (or masks that together keep none of the channels the signal
    reaches a BN on) is fine where the signal goes around it: a residual block whose
    branch dies becomes the identity, a Concatenate keeps its other inputs, and one
    `UserWarning` per such join names the branch's BN keys ("... the block becomes the
    identity ..."). Where no path from the input to an output avoids such BNs the
    output would be a constant, so that is a ValueError naming them. The masks are
    used as given (exactness with `apply_masks` needs that): `prune` does not apply a
    `min_channels`; draw masks with `eb_tf.channel_masks(..., min_channels=1)` (the
    default), which keeps at least that many channels in every BN.

    Args:
      model: a functional or Sequential model, tf_keras or Keras 3; nested functional
        models (e.g. a keras.applications backbone) and several inputs/outputs are
        supported.
      masks: {BN key: bool array, True = keep}, as from `eb_tf.channel_masks`.
      unknown: what a layer the pruner cannot map becomes: "barrier" (the default; its
        spaces keep their channels, with a warning) or "error" (a ValueError, as
        before 0.3).

    Returns:
      An uncompiled functional model of the same Keras whose inference output equals
      `apply_masks(model, masks)`'s.

    Example:

        small = eb_tf.prune(model, masks)
        x = np.random.rand(2, 32, 32, 3).astype("float32")
        np.testing.assert_allclose(small(x), eb_tf.apply_masks(model, masks)(x),
                                   atol=1e-4)

    Raises:
      ValueError: for invalid masks, masks that make an output independent of the
        input ("... independent of its input (a constant): the signal dies at BN 'bn0'
        (its mask keeps 0 of 8 channels) ..."), a subclassed model, a model without
        BatchNormalization (nothing to prune), a tfmot-wrapped model, or with
        `unknown="error"` a layer the pruner cannot map (named with its class and the
        supported types); nothing is built then.
    """
    where = "eb_tf.prune"
    check_model(model, where)
    if not batchnorm.bn_layers(model, include_frozen=True, where=where):
        raise ValueError(f"{where}: model {model.name!r} has no BatchNormalization layer, "
                         "so there is nothing to prune: masks are drawn from BN gammas. "
                         "Add BatchNormalization after the convolutions to search it.")
    plan = channel_plan.analyze(model, masks, where, unknown=unknown)
    for note in liveness.check_signal(plan, where):
        warnings.warn(note, stacklevel=2)
    note = barriers.note(plan, where)
    if note:
        warnings.warn(note, stacklevel=2)
    return _Rebuilder(plan).build()


class _Rebuilder:
    """Walks the original nodes model by model and calls the pruned layers."""

    def __init__(self, plan):
        self.plan, self.g = plan, plan.graph
        self.layers, self.assign = {}, []
        self.keras = check_model(plan.graph.model, "eb_tf.prune")
        self.select_cls = channel_select_class(plan.graph.model)

    def build(self):
        model = self._model(self.g.model, top=True)
        for layer, weights in self.assign:
            if isinstance(weights, dict):
                weights = [weights[handlers.weight_name(v)] for v in layer.weights]
            layer.set_weights(weights)
        return model

    def _model(self, m, top=False):
        lookup, names, gathers = {}, {layer.name for layer in m.layers}, {}
        new_inputs = []
        keras = self.keras
        for kt in m.inputs:
            key = self.g.key(kt)
            shape = list(kt.shape)
            if not top:
                shape[-1] = int(self.plan.phys[key].size)
            inp = keras.Input(batch_shape=tuple(shape), dtype=kt.dtype,
                              name=graph.input_layer_name(kt))
            new_inputs.append(inp)
            lookup[key] = inp
        for node in graph.model_nodes(m):
            if id(node) not in self.g.op_of_node:         # a nested model, inlined
                inner = self._model(graph.node_layer(node))
                inner.trainable = graph.node_layer(node).trainable
                args, kwargs = self._map(node, lookup, None, names, gathers)
                outs = inner(*args, **kwargs)
            else:
                op = self.g.ops[self.g.op_of_node[id(node)]]
                args, kwargs = self._map(node, lookup, op, names, gathers)
                if dispatch.tf_op_name(op.layer) and self.plan.handlers[op.index].stateful:
                    args, kwargs = self._slice_constants(op, args, kwargs)
                select = self._select_indices(op)
                if select is not None and np.array_equal(select, np.arange(len(select))) \
                        and len(select) == self.plan.p_in[(op.index, 0)].size:
                    outs = args[0]                    # a gather that keeps everything
                else:
                    outs = self._layer(op, select)(*args, **kwargs)
            for kt, y in zip(graph.node_outputs(node), tf.nest.flatten(outs)):
                lookup[self.g.key(kt)] = y
        outputs = [lookup[self.g.key(kt)] for kt in m.outputs]
        return keras.Model(graph.pack_like(m, graph.nested_inputs(m), new_inputs),
                           graph.pack_like(m, graph.nested_outputs(m), outputs), name=m.name)

    def _map(self, node, lookup, op, names, gathers):
        """The node's call arguments over the new tensors, with gathers on narrowed edges."""
        inputs = []
        for slot, kt in enumerate(graph.node_inputs(node)):
            key = self.g.key(kt)
            y = lookup[key]
            if op is not None and self.plan.needs_gather(op, slot):
                y = self._gather(op, slot, key, y, names, gathers)
            inputs.append(y)
        return graph.call_arguments(node, inputs)

    def _slice_constants(self, op, args, kwargs):
        """A TF op's per-channel constant operands, sliced to the channels it keeps."""
        p_in, channels = self.plan.p_in[(op.index, 0)], self.plan.channels(op.inputs[0])

        def cut(value):
            if hasattr(value, "_keras_history"):          # the op's tensor input
                return value
            return handlers.slice_channels(value, p_in, channels)

        return [cut(a) for a in args], {k: cut(v) for k, v in kwargs.items()}

    def _gather(self, op, slot, key, y, names, gathers):
        p = self.plan.p_in[(op.index, slot)]
        cache_key = (key, tuple(p.tolist()))
        if cache_key not in gathers:
            name, n = f"{op.layer.name}_select", 1
            while name in names:
                n += 1
                name = f"{op.layer.name}_select{n}"
            names.add(name)
            indices = np.searchsorted(self.plan.phys[key], p)
            gathers[cache_key] = self.select_cls(indices.tolist(), name=name)(y)
        return gathers[cache_key]

    def _select_indices(self, op):
        if self.plan.handlers[op.index].kind != "select":
            return None
        p_in = self.plan.p_in[(op.index, 0)]
        wanted = np.asarray(op.layer.indices)[self.plan.phys[op.outputs[0]]]
        return np.searchsorted(p_in, wanted)

    def _layer(self, op, select):
        layer = op.layer
        if id(layer) in self.layers:
            return self.layers[id(layer)]
        plan, h = self.plan, self.plan.handlers[op.index]
        if is_keras3_operation(layer):    # keras.ops.*: stateless, constants are arguments
            self.layers[id(layer)] = layer
            return layer
        if h.kind == "barrier":
            self.layers[id(layer)] = self._copy(layer)
            return self.layers[id(layer)]
        p_in = plan.p_in[(op.index, 0)]
        a_out = plan.phys[op.outputs[0]]
        fold = plan.fold(op) if h.kind == "producer" else None
        fold_bias = fold is not None and bool(np.any(fold)) and not layer.use_bias
        config = handlers.new_config(h, layer, p_in, a_out, select, fold_bias,
                                     channels=plan.channels(op.inputs[0]))
        new = type(layer).from_config(config)
        self.layers[id(layer)] = new
        if layer.weights:
            weights = handlers.slice_weights(
                h, layer, plan.weights(layer), p_in, a_out, plan.channels(op.inputs[0]), fold)
            self.assign.append((new, weights))
        return new

    def _copy(self, layer):
        """A barrier: the same layer rebuilt from its config, weights copied (masks
        applied to the BN layers in it); a stateless layer without a working config is
        called as it is."""
        if graph.is_model(layer):
            new = self.keras.models.clone_model(layer)
            new.set_weights(layer.get_weights())
            for old, twin in zip(graph.all_layers(layer), graph.all_layers(new)):
                if id(old) in self.plan.bn_key and old.weights:
                    w = self.plan.weights(old)
                    twin.set_weights([w[handlers.weight_name(v)] for v in old.weights])
            return new
        try:
            new = type(layer).from_config(layer.get_config())
        except Exception as e:  # a custom layer without a working get_config
            if not layer.weights:
                return layer        # stateless: the pruned model may call it as well
            why = " ".join(str(e).split())[:160]
            raise ValueError(f"eb_tf.prune: layer {layer.name!r} ({type(layer).__name__}) is "
                             f"a barrier with weights but cannot be rebuilt from its config "
                             f"({type(e).__name__}: {why}); give it a get_config() or "
                             "register a handler for it.") from e
        if layer.weights:
            masked = id(layer) in self.plan.bn_key
            self.assign.append((new, self.plan.weights(layer) if masked
                                else layer.get_weights()))
        return new
