"""Edge export: TFLite conversion, LiteRT evaluation and side-by-side comparison.

Modules in import order: `litert` (run a .tflite file: accuracy, latency), `tflite`
(`export_tflite`, `convert_tflite`), `compare` (`compare_models`: dense vs ticket on the
edge). tensorflow_model_optimization is imported only when a QAT model is converted.

Example:

    from eb_tf import export
    info = export.export_tflite(ticket, "/tmp/ticket.tflite", mode="int8", calibration=ds)
    export.measure_latency("/tmp/ticket.tflite").median_ms
"""
from eb_tf.export.compare import Comparison, compare_models
from eb_tf.export.litert import LatencyStats, LiteRTModel, evaluate_accuracy, measure_latency
from eb_tf.export.tflite import MODES, ExportInfo, convert_tflite, export_tflite, is_qat_model

__all__ = ["MODES", "ExportInfo", "export_tflite", "convert_tflite", "is_qat_model",
           "LiteRTModel", "LatencyStats", "evaluate_accuracy", "measure_latency",
           "Comparison", "compare_models"]
