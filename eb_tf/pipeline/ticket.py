"""Load a drawn or retrained Early-Bird ticket from disk, in any (fresh) process.

`load_ticket(path)` accepts
- a ticket folder `RUN/tickets/p0.5/` (the pruned model as drawn, before retraining),
- a run folder `RUN/` (its final model for `ratio`: `retrain/p0.5/final.keras`, or
  the dense model of a `dense` run), or
- a `.keras` file written by the pipeline (QAT models and `ChannelSelect` gathers load
  because importing eb_tf registers them).

Example:

    import eb_tf
    ticket = eb_tf.load_ticket("/tmp/eb_quickstart")          # the retrained p=0.5 model
    ticket.model.predict(x)
    ticket.meta["epoch"], ticket.masks["bn1"].sum()
"""
import dataclasses
import os
from typing import Dict, Optional

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import keras, keras3, saved_keras_version
from eb_tf.pruning import channel_select  # noqa: F401  registers the gather layer for loading

__all__ = ["Ticket", "load_ticket", "load_model"]


def load_model(path: str):
    """The uncompiled model of a `.keras` file, loaded by the Keras that wrote it.

    A tf_keras file may hold QAT layers (tfmot's scope is entered for it); a Keras 3
    file is loaded by Keras 3 (`ChannelSelect` gathers and eb_tf's regularisers
    included).

    Example:

        model = eb_tf.pipeline.ticket.load_model("run/tickets/p0.5/model.keras")
    """
    if saved_keras_version(path) == 3:
        return keras3.saving.load_model(path, compile=False)
    from eb_tf.quantization import qat  # tfmot: a saved model may hold QAT layers
    with qat.quantize_scope():
        return keras.models.load_model(path, compile=False)


@dataclasses.dataclass(frozen=True)
class Ticket:
    """A loaded ticket.

    Attributes:
      model: the model (uncompiled; tf_keras or Keras 3, as saved).
      masks: {BN key: bool array (True = kept)} the ticket was drawn with ({} if unknown).
      meta: the ticket's meta.json (ratio, epoch, found, params, flops, ...) ({} if none).
      path: the .keras file loaded.
    """
    model: object
    masks: Dict[str, np.ndarray]
    meta: dict
    path: str


def _model_path(path: str, ratio: Optional[float]):
    """(the .keras file, the ticket folder or None) that `path` designates."""
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"load_ticket: {path!r} is not a .keras file, ticket folder or run "
                             "folder")
        return path, None
    if os.path.isfile(os.path.join(path, "model.keras")):
        return os.path.join(path, "model.keras"), path
    report_path = os.path.join(path, "report.json")
    if not os.path.isfile(report_path):
        raise ValueError(f"load_ticket: {path!r} is no .keras file, ticket folder (model.keras) "
                         "or run folder (report.json)")
    final = io_utils.read_json(report_path).get("final", {})
    if not final:
        raise ValueError(f"load_ticket: the run in {path!r} has no final model yet; finish it "
                         "(eb_train / eb_retrain) or pass a ticket folder tickets/p<r>/")
    if ratio is None:
        if len(final) != 1:
            raise ValueError(f"load_ticket: the run in {path!r} has final models for "
                             f"{sorted(final)}; pass ratio= one of them")
        name = next(iter(final))
    else:
        name = f"{float(ratio):g}"
        if name not in final:
            raise ValueError(f"load_ticket: ratio={ratio!r} is not among the run's final models "
                             f"{sorted(final)}")
    folder = os.path.join(path, "tickets", f"p{name}")
    return os.path.join(path, final[name]["model"]), (folder if os.path.isdir(folder) else None)


def load_ticket(path: str, ratio: Optional[float] = None) -> Ticket:
    """Loads a ticket (model, masks, meta) from a ticket folder, run folder or .keras file.

    Args:
      path: `RUN/tickets/p0.5/`, `RUN/` or a `.keras` file.
      ratio: which ratio's final model of a run folder with several ratios.

    Returns:
      A `Ticket`.

    Raises:
      ValueError: the path is none of the above, the run has no final model yet, or
        `ratio` is not one of the run's ratios.
    """
    path = os.fspath(path)
    model_path, folder = _model_path(path, ratio)
    model = load_model(model_path)
    masks, meta = {}, {}
    if folder is not None:
        if os.path.isfile(os.path.join(folder, "mask.npz")):
            with np.load(os.path.join(folder, "mask.npz")) as data:
                masks = {k: data[k].astype(bool) for k in data.files}
        if os.path.isfile(os.path.join(folder, "meta.json")):
            meta = io_utils.read_json(os.path.join(folder, "meta.json"))
    return Ticket(model, masks, meta, model_path)
