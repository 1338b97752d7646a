"""The tf_keras functional graph as a flat list of layer calls (ops) over tensors.

Nested functional models (a keras.applications backbone inside a model) are inlined:
an inner model's input tensors are the outer tensors that feed it, so a channel space
can cross model boundaries. The pruner's channel pass runs on this flat view and the
rebuild walks the same nodes again, model by model.

Example:

    from eb_tf.pruning import graph
    g = graph.build(model)
    for op in g.ops:
        print(op.layer.name, [g.tensors[t].channels for t in op.inputs])
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

from eb_tf.compat import check_tf_keras_model, keras, tf

__all__ = ["Op", "TensorInfo", "Graph", "build", "model_nodes", "is_functional"]


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
    """One call of a (non-model) layer: `outputs = layer(inputs)`."""
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
      model: a functional or Sequential tf_keras model; nested functional models are
        inlined (each may be called once).
      where: the public function's name for error messages.

    Returns:
      A `Graph` whose `ops` are in topological order.

    Raises:
      ValueError: for a subclassed model, a nested model called more than once, or a
        nested model whose inputs do not match its call.
    """
    check_tf_keras_model(model, where)
    _require_functional(model, where)
    g = Graph(model)
    for kt in model.inputs:
        g.inputs.append(g._tensor(kt, is_input=True))  # pylint: disable=protected-access
    _walk(g, model, (), where, set())
    for kt in model.outputs:
        k = g.key(kt)
        g.tensors[k].is_output = True
        g.outputs.append(k)
    return g


def _walk(g: Graph, model, path, where, seen):
    for node in model_nodes(model):
        layer = node.layer
        in_keys = [g.key(kt) for kt in node.keras_inputs]
        if isinstance(layer, keras.Model):
            _require_functional(layer, where, inner=True)
            if id(layer) in seen:
                raise ValueError(
                    f"{where}: nested model {layer.name!r} is called more than once; only "
                    "nested models called once are supported (share its layers instead).")
            seen.add(id(layer))
            if len(layer.inputs) != len(in_keys):
                raise ValueError(
                    f"{where}: nested model {layer.name!r} has {len(layer.inputs)} inputs but "
                    f"is called on {len(in_keys)} tensors.")
            for kt, k in zip(layer.inputs, in_keys):
                g.alias[id(kt)] = k
            _walk(g, layer, path + (layer.name,), where, seen)
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
