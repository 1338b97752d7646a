"""eb_tf: Early-Bird lottery tickets for tf_keras and Keras 3, and tfmot QAT for tf_keras.

Find the prunable subnetwork (the Early-Bird ticket) early in training, draw it as a
physically smaller functional model, retrain it, and ship it to TFLite:

    import eb_tf
    from eb_tf.compat import keras

    model = eb_tf.add_bn_l1(model, strength=1e-4)            # network-slimming L1
    eb = eb_tf.EarlyBird(ratios=(0.5,), threshold=0.1, window=5)
    model.compile(...); model.fit(data, epochs=160, callbacks=[eb])
    ticket = eb_tf.prune(model, eb.tickets[0.5])             # fewer filters, exact

The sub-packages, in import order (each imports only those before it): `sparsity`,
`pruning`, `baselines`, `quantization`, `export`, `models`, `data`, `distribute`, `pipeline`,
`tuning`, `bench` (see ARCHITECTURE.md). The names below are re-exported from them.
`import eb_tf` loads neither keras_tuner, tensorflow_model_optimization nor matplotlib:
the names that need them (`quantize_for_search`, `tune`, `bench`...) load them on
first use. It leaves `os.environ` and `tf.keras` as they were: models of tf_keras and
of Keras 3 are both accepted, told apart per model (`eb_tf.compat.keras_for`).
"""
import importlib

from eb_tf import (baselines, compat, data, distribute, export, io_utils, models, pipeline,
                   pruning, quantization, sparsity)
from eb_tf.compat import keras
from eb_tf.distribute import sync_batchnorm
from eb_tf.export import (Comparison, ExportInfo, LatencyStats, LiteRTModel, compare_models,
                          convert_tflite, evaluate_accuracy, export_tflite, is_qat_model,
                          measure_latency)
from eb_tf.pipeline import Ticket, export_run, load_ticket
from eb_tf.pipeline.widths import round_masks     # with multiple="auto": measured here
from eb_tf.pruning import (ChannelSelect, FlopsReport, Keras3ChannelSelect, ParamsReport,
                           apply_masks, count_flops, count_params, prune, summary)
from eb_tf.quantization import (RETRAIN_PRECISIONS, SEARCH_PRECISIONS, PreparedModel, is_quantized,
                                prepare_for_precision, strip_precision)
from eb_tf.sparsity import (BNRef, EarlyBird, add_bn_l1, add_weight_decay, bn_layers, channel_masks,
                            distance_matrix, gammas, mask_distance, masks_from_gammas)
from eb_tf.version import __version__

# name -> module that defines it; imported on first use (they need tfmot or keras_tuner).
_LAZY = {
    "quantize_for_search": "eb_tf.quantization.qat",
    "strip_quantization": "eb_tf.quantization.qat",
    "quantize_scope": "eb_tf.quantization.qat",
    "tune": "eb_tf.tuning", "EBTuner": "eb_tf.tuning", "TuneConfig": "eb_tf.tuning",
    "TuneResult": "eb_tf.tuning",
}
_LAZY_MODULES = ("tuning", "bench")

__all__ = [
    # sparsity: BN gammas, L1, masks, the EarlyBird callback
    "BNRef", "bn_layers", "gammas", "channel_masks", "add_bn_l1", "add_weight_decay",
    "masks_from_gammas", "mask_distance", "distance_matrix", "EarlyBird",
    # pruning: physically smaller models
    "apply_masks", "prune", "round_masks", "summary", "ChannelSelect", "Keras3ChannelSelect",
    "count_flops",
    "count_params", "FlopsReport", "ParamsReport",
    # quantization: low-precision search and retrain
    "SEARCH_PRECISIONS", "RETRAIN_PRECISIONS", "PreparedModel", "prepare_for_precision",
    "strip_precision", "is_quantized", "quantize_for_search", "strip_quantization",
    "quantize_scope",
    # export: TFLite and LiteRT
    "ExportInfo", "export_tflite", "convert_tflite", "is_qat_model", "LiteRTModel",
    "LatencyStats", "evaluate_accuracy", "measure_latency", "Comparison", "compare_models",
    # distribute, pipeline, tuning
    "sync_batchnorm", "export_run", "Ticket", "load_ticket", "tune", "EBTuner", "TuneConfig",
    "TuneResult",
    # sub-packages and helpers
    "compat", "io_utils", "keras", "sparsity", "pruning", "baselines", "quantization",
    "export", "models", "data", "distribute", "pipeline", "tuning", "bench", "__version__",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))
