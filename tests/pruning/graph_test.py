"""graph.build: the flat view of functional graphs, nested models inlined."""
import pytest

from eb_tf.compat import keras
from eb_tf.pruning import graph

L = keras.layers


def _backbone():
    inp = keras.Input((8, 8, 3), name="bb_in")
    x = L.Conv2D(4, 3, padding="same", name="bb_conv")(inp)
    x = L.BatchNormalization(name="bb_bn")(x)
    return keras.Model(inp, L.ReLU(name="bb_relu")(x), name="backbone")


def test_build_orders_ops_topologically_and_links_tensors():
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 1, name="a")(inp)
    b = L.Conv2D(4, 1, name="b")(inp)
    out = L.Add(name="add")([a, b])
    g = graph.build(keras.Model(inp, out))
    names = [op.layer.name for op in g.ops]
    assert names[-1] == "add" and set(names[:2]) == {"a", "b"}
    add = g.ops[-1]
    assert [g.tensors[t].producer for t in add.inputs] == [names.index("a"), names.index("b")]
    assert g.tensors[g.inputs[0]].is_input and len(g.tensors[g.inputs[0]].consumers) == 2
    assert g.tensors[g.outputs[0]].is_output and g.tensors[g.outputs[0]].channels == 4


def test_build_inlines_nested_model_and_aliases_its_boundary():
    inner = _backbone()
    inp = keras.Input((8, 8, 3))
    out = L.Dense(2, name="head")(L.GlobalAveragePooling2D(name="gap")(inner(inp)))
    g = graph.build(keras.Model(inp, out))
    assert [op.layer.name for op in g.ops] == ["bb_conv", "bb_bn", "bb_relu", "gap", "head"]
    assert [op.path for op in g.ops[:3]] == [("backbone",)] * 3 and g.ops[3].path == ()
    conv, gap = g.ops[0], g.ops[3]
    assert conv.inputs == g.inputs                       # inner input == outer tensor
    assert gap.inputs == g.ops[2].outputs                # inner output == outer tensor
    assert g.ops_of(inner.get_layer("bb_bn")) == [g.ops[1]]


def test_build_records_every_call_of_a_shared_layer():
    shared = L.Conv2D(3, 1, name="shared")
    a, b = keras.Input((4, 4, 2)), keras.Input((4, 4, 2))
    g = graph.build(keras.Model([a, b], L.Add()([shared(a), shared(b)])))
    assert [op.layer.name for op in g.ops_of(shared)] == ["shared", "shared"]
    assert len(g.inputs) == 2


def test_build_accepts_sequential_with_input():
    model = keras.Sequential([keras.Input((5,)), L.Dense(3, name="d1"), L.Dense(2, name="d2")])
    assert [op.layer.name for op in graph.build(model).ops] == ["d1", "d2"]


def test_build_rejects_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(keras.Input((3,)))
    with pytest.raises(ValueError, match=r"where: model .* \(Net\) is not a functional graph"):
        graph.build(net, where="where")


def test_nested_model_called_twice_is_one_op_per_call():
    inner = _backbone()
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    model = keras.Model([a, b], L.Add()([inner(a), inner(b)]))
    g = graph.build(model)
    assert [op.layer.name for op in g.ops] == ["backbone", "backbone", "add"]
    assert g.ops[0].inputs == [g.inputs[0]] and g.ops[1].inputs == [g.inputs[1]]
    assert g.ops[2].inputs == g.ops[0].outputs + g.ops[1].outputs


def test_build_rejects_non_models():
    with pytest.raises(ValueError, match="expects a Keras model"):
        graph.build(object())
