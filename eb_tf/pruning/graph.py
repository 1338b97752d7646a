"""The tf_keras functional graph as a flat list of layer calls (ops) over tensors.

Nested functional models (a keras.applications backbone inside a model) are inlined:
an inner model's input tensors are the outer tensors that feed it, so a channel space
can cross model boundaries. A nested model called more than once (a shared tower) is
one op instead, whose layer is that model (the pruner keeps it whole). The pruner's
channel pass runs on this flat view and the rebuild walks the same nodes again, model
by model.

Example:

    from eb_tf.pruning import graph
    g = graph.build(model)
    for op in g.ops:
        print(op.layer.name, [g.tensors[t].channels for t in op.inputs])
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

from eb_tf.compat import check_tf_keras_model, keras, tf

__all__ = ["Op", "TensorInfo", "Graph", "build", "model_nodes", "is_functional",
           "call_arguments"]


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
    layer: keras.layers.Layer
    node: object                            # the tf_keras Node of this call
    path: Tuple[str, ...]                   # names of the enclosing nested models
    inputs: List[int]                       # tensor keys, in node.keras_inputs order
    outputs: List[int]                      # tensor keys, in flattened output order


@dataclasses.dataclass
class Graph:
    """A model's layer calls in topological order, nested models inlined."""
    model: keras.Model
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


def is_functional(model) -> bool:
    """True for a graph-network model (functional, or Sequential with known input)."""
    return isinstance(model, keras.Model) and bool(getattr(model, "_is_graph_network", False))


def model_nodes(model) -> list:
    """The model's own nodes in topological order (inputs first), input nodes left out."""
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):  # pylint: disable=protected-access
        nodes.extend(n for n in model._nodes_by_depth[depth] if not n.is_input)  # pylint: disable=protected-access
    return nodes


def call_arguments(node, inputs):
    """(args, kwargs) of the call behind `node`, its KerasTensors replaced by `inputs`
    (in `node.keras_inputs` order); other arguments (constants, flags) are kept."""
    per_id = {}
    for (kt_id, _), y in zip(node._keras_inputs_ids_and_indices, inputs):  # pylint: disable=protected-access
        per_id.setdefault(kt_id, []).append(y)
    return node.map_arguments({k: list(reversed(v)) for k, v in per_id.items()})


def _count_calls(model, counts):
    for node in model_nodes(model):
        if isinstance(node.layer, keras.Model):
            counts[id(node.layer)] = counts.get(id(node.layer), 0) + 1
            if counts[id(node.layer)] == 1:
                _count_calls(node.layer, counts)
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
      model: a functional or Sequential tf_keras model; nested functional models
        called once are inlined, those called more often are one op each.
      where: the public function's name for error messages.

    Returns:
      A `Graph` whose `ops` are in topological order.

    Raises:
      ValueError: for a subclassed model, or a nested model whose inputs do not match
        its call.
    """
    check_tf_keras_model(model, where)
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
        layer = node.layer
        in_keys = [g.key(kt) for kt in node.keras_inputs]
        if isinstance(layer, keras.Model) and counts[id(layer)] == 1:
            _require_functional(layer, where, inner=True)
            if len(layer.inputs) != len(in_keys):
                raise ValueError(
                    f"{where}: nested model {layer.name!r} has {len(layer.inputs)} inputs but "
                    f"is called on {len(in_keys)} tensors.")
            for kt, k in zip(layer.inputs, in_keys):
                g.alias[id(kt)] = k
            _walk(g, layer, path + (layer.name,), where, counts)
            for kt_out, kt_in in zip(tf.nest.flatten(node.outputs), layer.outputs):
                g.alias[id(kt_out)] = g.key(kt_in)
            continue
        index = len(g.ops)
        for slot, k in enumerate(in_keys):
            g.tensors[k].consumers.append((index, slot))
        out_keys = [g._tensor(kt, producer=index)  # pylint: disable=protected-access
                    for kt in tf.nest.flatten(node.outputs)]
        g.ops.append(Op(index, layer, node, path, in_keys, out_keys))
        g.op_of_node[id(node)] = index
        g.calls.setdefault(id(layer), []).append(index)
