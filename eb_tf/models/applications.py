"""keras.applications models by name (`keras:MobileNetV2` or `mobilenetv2`), weights=None.

Built with `include_top=True`, `classes=num_classes`, random init, logits out
(`classifier_activation=None`) and, where the application has the switch,
`include_preprocessing=False` (eb_tf's pipelines already normalise). `width` is
the MobileNets' `alpha`; other applications accept only width 1.0. Applications
that always rescale inside the model (EfficientNet B0-B7) keep doing so.

Example:

    from eb_tf.models import applications
    model = applications.build("MobileNetV2", num_classes=10, input_shape=(32, 32, 3),
                               width=0.35)
"""
import inspect
from typing import List, Optional

from eb_tf.compat import check_model
from eb_tf.models import common
from eb_tf.models.common import keras


def application_names() -> List[str]:
    """The model functions of keras.applications (MobileNetV2, ResNet50, ...)."""
    return sorted(n for n in dir(keras.applications)
                  if n[:1].isupper() and callable(getattr(keras.applications, n)))


def resolve(name: str) -> Optional[str]:
    """`keras:MobileNetV2` / `mobilenetv2` -> "MobileNetV2"; None if not an application name.

    Raises:
      ValueError: for a `keras:` name that keras.applications lacks (listing them).
    """
    by_lower = {n.lower(): n for n in application_names()}
    if name.startswith("keras:"):
        wanted = name[len("keras:"):]
        if wanted.lower() not in by_lower:
            raise ValueError(f"Unknown keras.applications model {name!r}; known: "
                             f"{['keras:' + n for n in application_names()]}.")
        return by_lower[wanted.lower()]
    return by_lower.get(name.lower())


def build(app: str, num_classes: int, input_shape, width: float = 1.0, **kwargs):
    """Builds keras.applications.<app> untrained for `num_classes` and `input_shape`.

    Args:
      app: the application's name as in keras.applications (e.g. "MobileNetV2").
      num_classes: the classifier's outputs.
      input_shape: (height, width, channels); each application has its minimum size
        (32 for most, 71 for Xception, 75 for the Inceptions).
      width: the MobileNets' `alpha`; must be 1.0 for the others.
      **kwargs: passed on (e.g. `dropout_rate`, `minimalistic`).

    Returns:
      A functional model (tf_keras, or Keras 3 inside `common.use_keras(3)`) with
      randomly initialised weights.

    Raises:
      ValueError: for width != 1.0 on an application without `alpha`, or an input
        shape the application refuses (its own message).

    Example:

        build("MobileNetV3Small", 100, (64, 64, 3), width=0.75, minimalistic=True)
    """
    where = f"eb_tf.models.build('keras:{app}')"
    width = common.check_width(width, where)
    input_shape, num_classes = common.check_input(input_shape, num_classes, where)
    fn = getattr(keras.applications, app)
    params = inspect.signature(fn).parameters
    args = dict(include_top=True, weights=None, input_shape=input_shape,
                classes=num_classes)
    if "alpha" in params:
        args["alpha"] = width
    elif width != 1.0:
        raise ValueError(f"{where}: width={width} is not supported; only the MobileNets "
                         f"take a width (alpha). Use width=1.0.")
    if "classifier_activation" in params or "kwargs" in params:
        args["classifier_activation"] = None
    if "include_preprocessing" in params:
        args["include_preprocessing"] = False
    args.update(kwargs)
    model = fn(**args)
    check_model(model, where)
    return model
