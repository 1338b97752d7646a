"""The model zoo: one registry, `eb_tf.models.build(name, num_classes, input_shape, width)`.

Names (`names()` lists them):

* `vgg11`, `vgg13`, `vgg16`, `vgg19`: network-slimming CIFAR VGG with BN (gamma 0.5);
* `preresnet<D>`: pre-activation bottleneck ResNet for CIFAR, D = 9n+2 (56, 101, 164);
  `preresnet<D>_basic`: basic-block pre-activation ResNet, D = 6n+2 (20, 56, 110);
* `resnet18`, `resnet34`, `resnet50`, `resnet101`, `resnet152`: ImageNet layout,
  post-activation, conv without bias followed by BN (torchvision's v1.5);
* `convnet`: a small conv-BN-ReLU net for the embedded digits and quickstarts;
* `keras:<Application>` (e.g. `keras:MobileNetV2`) or its lower-case name
  (`mobilenetv2`) for any keras.applications model, weights=None;
* `"package.module:function"`: a user builder called as
  `function(num_classes=..., input_shape=..., width=..., **kwargs)`.

Every zoo model is a functional tf_keras model that outputs logits (compile with
`from_logits=True`), channels-last; `keras_version=3` builds the same model in Keras 3.

Example:

    import eb_tf
    model = eb_tf.models.build("vgg16", num_classes=10, input_shape=(32, 32, 3), width=0.25)
"""
import importlib
import re
from typing import List

from eb_tf.compat import check_model, check_tf_keras_model
from eb_tf.models import applications, common, convnet, preresnet, resnet, vgg

__all__ = ["build", "names"]

_FIXED = {
    **{f"vgg{d}": (vgg.vgg, {"depth": d}) for d in sorted(vgg.CONFIGS)},
    **{f"resnet{d}": (resnet.resnet, {"depth": d}) for d in sorted(resnet.LAYOUTS)},
    "convnet": (convnet.convnet, {}),
}
_PRERESNET = re.compile(r"^preresnet(\d+)(_basic)?$")
_LISTED_PRERESNETS = ("preresnet56", "preresnet101", "preresnet164", "preresnet20_basic",
                      "preresnet56_basic", "preresnet110_basic")


def names() -> List[str]:
    """The zoo's names, then `keras:<Application>` for every keras.applications model."""
    return sorted(_FIXED) + list(_LISTED_PRERESNETS) + [
        f"keras:{n}" for n in applications.application_names()]


def _unknown(name) -> ValueError:
    return ValueError(
        f"Unknown model {name!r}. Known: {sorted(_FIXED) + list(_LISTED_PRERESNETS)}, "
        f"preresnet<9n+2>, preresnet<6n+2>_basic, 'keras:<Application>' (e.g. "
        f"'keras:MobileNetV2', or lower case 'mobilenetv2'; see eb_tf.models.names()), or a "
        f"user builder 'package.module:function'.")


def _user_builder(name: str):
    module_name, _, fn_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"Model builder {name!r}: cannot import module {module_name!r} "
                         f"({e}). Use 'package.module:function' with the module on "
                         f"sys.path.") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ValueError(f"Model builder {name!r}: module {module_name!r} has no callable "
                         f"{fn_name!r}.")
    return fn


def build(name: str, num_classes: int, input_shape, width: float = 1.0,
          keras_version: int = 2, **kwargs):
    """Builds a model of the zoo (or keras.applications, or a user builder) by name.

    Args:
      name: a name of `names()`, `preresnet<D>[_basic]`, `keras:<Application>` or
        `"package.module:function"`.
      num_classes: the classifier's outputs.
      input_shape: (height, width, channels).
      width: channel multiplier (rounded half up, at least 1 channel); for
        keras.applications it is the MobileNets' `alpha` (other applications: 1.0 only).
      keras_version: 2 (tf_keras, the default) or 3 (Keras 3, TensorFlow backend; a
        user builder must then return a Keras 3 model).
      **kwargs: passed on to the builder (e.g. `gamma_init=1.0`, `cfg=[...]`).

    Returns:
      A functional tf_keras (or Keras 3) model.

    Raises:
      ValueError: for an unknown name (listing the known ones), a builder that cannot
        be imported or returns no tf_keras model, or a bad width/shape/num_classes.

    Example:

        model = build("preresnet20_basic", 10, (32, 32, 3), width=0.5)
        model = build("keras:MobileNetV2", 10, (32, 32, 3), width=0.35)
        model = build("my_pkg.nets:tiny", 10, (32, 32, 3))
        model = build("convnet", 10, (16, 16, 1), keras_version=3)   # Keras 3
    """
    with common.use_keras(keras_version):
        model = _build(name, num_classes, input_shape, width, **kwargs)
    if keras_version == 3:
        if check_model(model, f"eb_tf.models.build({name!r})").__name__ != "keras":
            raise ValueError(f"eb_tf.models.build({name!r}, keras_version=3) got a tf_keras "
                             "model from the builder; build it with `import keras`.")
        return model
    return check_tf_keras_model(model, f"eb_tf.models.build({name!r})")


def _build(name: str, num_classes: int, input_shape, width: float = 1.0, **kwargs):
    if not isinstance(name, str) or not name:
        raise _unknown(name)
    if name in _FIXED:
        fn, fixed = _FIXED[name]
        kwargs.setdefault("name", name)
        return fn(num_classes=num_classes, input_shape=input_shape, width=width, **fixed,
                  **kwargs)
    match = _PRERESNET.match(name)
    if match:
        kwargs.setdefault("name", name)
        return preresnet.preresnet(int(match.group(1)), num_classes=num_classes,
                                   input_shape=input_shape, width=width,
                                   block="basic" if match.group(2) else "bottleneck", **kwargs)
    app = applications.resolve(name)
    if app is not None:
        return applications.build(app, num_classes, input_shape, width, **kwargs)
    if ":" in name and not name.startswith("keras:"):
        return _user_builder(name)(num_classes=num_classes, input_shape=input_shape,
                                   width=width, **kwargs)
    raise _unknown(name)
