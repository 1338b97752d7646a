"""The functional graph (tf_keras or Keras 3) as a flat list of layer calls over tensors.

Nested functional models (a keras.applications backbone inside a model) are inlined:
an inner model's input tensors are the outer tensors that feed it, so a channel space
can cross model boundaries. A nested model called more than once (a shared tower) is
one op instead, whose layer is that model (the pruner keeps it whole). The pruner's
channel pass runs on this flat view and the rebuild walks the same nodes again, model
by model.

Both Kerases are read through the same few functions (`model_nodes`, `node_layer`,
`node_inputs`, `call_arguments`, `call_values`, `nested_inputs`/`nested_outputs`):
a tf_keras node holds a layer, a Keras 3 node an operation, which may be a layer or an
op such as `keras.ops.multiply` (what `x * 2.0` records; the ops are calls like any
other here, and `eb_tf.pruning.dispatch` maps them by class).

Example:

    from eb_tf.pruning import graph
    g = graph.build(model)
    for op in g.ops:
        print(op.layer.name, [g.tensors[t].channels for t in op.inputs])
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

from eb_tf.compat import check_model, is_keras3, keras, keras3, tf

__all__ = ["Op", "TensorInfo", "Graph", "build", "model_nodes", "is_functional",
           "call_arguments", "call_values", "node_layer", "node_inputs", "node_outputs",
           "nested_inputs", "nested_outputs", "pack_like", "is_model", "all_layers",
           "input_layer_name", "graph_model"]
_MODELS = (keras.Model, keras3.Model)


@dataclasses.dataclass
class TensorInfo:
    """One tensor of the flat graph (a KerasTensor; nested-model inputs are aliases)."""
    key: int
    shape: tf.TensorShape
    producer: Optional[int] = None          # op index; None for model inputs
    consumers: List[Tuple[int, int]] = dataclasses.field(default_factory=list)
    is_input: bool = False
    is_output: bool = False

    @property
    def channels(self) -> Optional[int]:
        """The size of the last (channel) axis, None if unknown or rank 0."""
        if self.shape.rank is None or self.shape.rank == 0:
            return None
        return self.shape[-1]


@dataclasses.dataclass
class Op:
    """One call of a layer (or of a nested model called more than once)."""
    index: int
    layer: object                           # a Layer, or a Keras 3 op (keras.ops.add)
    node: object                            # the Node of this call
    path: Tuple[str, ...]                   # names of the enclosing nested models
    inputs: List[int]                       # tensor keys, in node.keras_inputs order
    outputs: List[int]                      # tensor keys, in flattened output order


@dataclasses.dataclass
class Graph:
    """A model's layer calls in topological order, nested models inlined."""
    model: object                           # a tf_keras or Keras 3 model
    ops: List[Op] = dataclasses.field(default_factory=list)
    tensors: Dict[int, TensorInfo] = dataclasses.field(default_factory=dict)
    inputs: List[int] = dataclasses.field(default_factory=list)
    outputs: List[int] = dataclasses.field(default_factory=list)
    alias: Dict[int, int] = dataclasses.field(default_factory=dict)
    op_of_node: Dict[int, int] = dataclasses.field(default_factory=dict)
    calls: Dict[int, List[int]] = dataclasses.field(default_factory=dict)  # id(layer) -> ops

    def key(self, kt) -> int:
        """The flat tensor key of a KerasTensor (resolving nested-model aliases)."""
        k = id(kt)
        while k in self.alias:
            k = self.alias[k]
        return k

    def ops_of(self, layer) -> List[Op]:
        """All calls of `layer` (more than one for a shared layer)."""
        return [self.ops[i] for i in self.calls.get(id(layer), [])]

    def _tensor(self, kt, **kw) -> int:
        k = self.key(kt)
        if k not in self.tensors:
            self.tensors[k] = TensorInfo(k, tf.TensorShape(kt.shape), **kw)
        return k


def is_model(obj) -> bool:
    """True for a Model of either Keras."""
    return isinstance(obj, _MODELS)


def is_functional(model) -> bool:
    """True for a graph-network model (functional, or Sequential with known input)."""
    if isinstance(model, keras.Model):
        return bool(getattr(model, "_is_graph_network", False))
    if isinstance(model, keras3.Sequential):
        return getattr(model, "_functional", None) is not None
    return isinstance(model, keras3.Model) and hasattr(model, "_nodes_by_depth")


def graph_model(model):
    """The model whose nodes hold the graph: a Keras 3 Sequential's inner functional."""
    if isinstance(model, keras3.Sequential):
        return model._functional  # pylint: disable=protected-access
    return model


def model_nodes(model) -> list:
    """The model's own nodes in topological order (inputs first), input nodes left out."""
    model, nodes = graph_model(model), []
    for depth in sorted(model._nodes_by_depth, reverse=True):  # pylint: disable=protected-access
        nodes.extend(n for n in model._nodes_by_depth[depth] if not n.is_input)  # pylint: disable=protected-access
    return nodes


def _is_keras3_node(node) -> bool:
    return hasattr(node, "arguments")


def node_layer(node):
    """The layer (or Keras 3 operation) a node calls."""
    return node.operation if _is_keras3_node(node) else node.layer


def node_inputs(node) -> list:
    """The node's input KerasTensors, in call order (a tensor used twice is listed twice)."""
    return list(node.input_tensors) if _is_keras3_node(node) else list(node.keras_inputs)


def node_outputs(node) -> list:
    """The node's output KerasTensors, flattened."""
    return tf.nest.flatten(node.outputs)


def call_values(node):
    """(args, kwargs) of the call behind `node`, as recorded (KerasTensors included)."""
    if _is_keras3_node(node):
        return list(node.arguments.args), dict(node.arguments.kwargs)
    return list(node.call_args), dict(node.call_kwargs)


def call_arguments(node, inputs):
    """(args, kwargs) of the call behind `node`, its KerasTensors replaced by `inputs`
    (in `node_inputs` order); other arguments (constants, flags) are kept."""
    if _is_keras3_node(node):
        values = iter(inputs)
        return node.arguments.convert(
            lambda x: next(values) if isinstance(x, keras3.KerasTensor) else x)
    per_id = {}
    for (kt_id, _), y in zip(node._keras_inputs_ids_and_indices, inputs):  # pylint: disable=protected-access
        per_id.setdefault(kt_id, []).append(y)
    return node.map_arguments({k: list(reversed(v)) for k, v in per_id.items()})


def nested_inputs(model):
    """The model's inputs in the structure it was built with (a tensor, list or dict)."""
    if is_keras3(model):
        return graph_model(model)._inputs_struct  # pylint: disable=protected-access
    return model._nested_inputs  # pylint: disable=protected-access


def nested_outputs(model):
    """The model's outputs in the structure it was built with."""
    if is_keras3(model):
        return graph_model(model)._outputs_struct  # pylint: disable=protected-access
    return model._nested_outputs  # pylint: disable=protected-access


def pack_like(model, structure, flat):
    """`flat` packed as `structure` (one of `model`'s nested inputs/outputs)."""
    if is_keras3(model):
        return keras3.tree.pack_sequence_as(structure, flat)
    return tf.nest.pack_sequence_as(structure, flat)


def input_layer_name(kt) -> str:
    """The name of the InputLayer behind a model input tensor."""
    return kt._keras_history[0].name  # pylint: disable=protected-access


def all_layers(model) -> list:
    """Every layer inside `model`, nested models expanded (not listed), in `layers` order."""
    out = []
    for layer in model.layers:
        out.extend(all_layers(layer) if is_model(layer) else [layer])
    return out


def _count_calls(model, counts):
    for node in model_nodes(model):
        layer = node_layer(node)
        if is_model(layer):
            counts[id(layer)] = counts.get(id(layer), 0) + 1
            if counts[id(layer)] == 1:
                _count_calls(layer, counts)
    return counts


def _require_functional(model, where, inner=False):
    if is_functional(model):
        return
    what = "nested model" if inner else "model"
    raise ValueError(
        f"{where}: {what} {model.name!r} ({type(model).__name__}) is not a functional graph. "
        "Supported: functional models and Sequential models with a known input shape "
        "(start them with keras.Input(...) or call build()); rewrite a subclassed model "
        "functionally.")


def build(model, where: str = "eb_tf.pruning.graph.build") -> Graph:
    """The flat graph of `model`.

    Args:
      model: a functional or Sequential model (tf_keras or Keras 3); nested models
        called once are inlined, those called more often are one op each.
      where: the public function's name for error messages.

    Returns:
      A `Graph` whose `ops` are in topological order.

    Raises:
      ValueError: for a subclassed model, or a nested model whose inputs do not match
        its call.
    """
    check_model(model, where)
    _require_functional(model, where)
    g = Graph(model)
    for kt in model.inputs:
        g.inputs.append(g._tensor(kt, is_input=True))  # pylint: disable=protected-access
    _walk(g, model, (), where, _count_calls(model, {}))
    for kt in model.outputs:
        k = g.key(kt)
        g.tensors[k].is_output = True
        g.outputs.append(k)
    return g


def _walk(g: Graph, model, path, where, counts):
    for node in model_nodes(model):
        layer = node_layer(node)
        in_keys = [g.key(kt) for kt in node_inputs(node)]
        if is_model(layer) and counts[id(layer)] == 1:
            _require_functional(layer, where, inner=True)
            if len(layer.inputs) != len(in_keys):
                raise ValueError(
                    f"{where}: nested model {layer.name!r} has {len(layer.inputs)} inputs but "
                    f"is called on {len(in_keys)} tensors.")
            for kt, k in zip(layer.inputs, in_keys):
                g.alias[id(kt)] = k
            _walk(g, layer, path + (layer.name,), where, counts)
            for kt_out, kt_in in zip(node_outputs(node), layer.outputs):
                g.alias[id(kt_out)] = g.key(kt_in)
            continue
        index = len(g.ops)
        for slot, k in enumerate(in_keys):
            g.tensors[k].consumers.append((index, slot))
        out_keys = [g._tensor(kt, producer=index)  # pylint: disable=protected-access
                    for kt in node_outputs(node)]
        g.ops.append(Op(index, layer, node, path, in_keys, out_keys))
        g.op_of_node[id(node)] = index
        g.calls.setdefault(id(layer), []).append(index)
