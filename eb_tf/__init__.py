"""eb_tf: Early-Bird lottery tickets for tf_keras and TensorFlow Model Optimization.

Find the prunable subnetwork (the Early-Bird ticket) early in training, draw it as a
physically smaller functional model, retrain it, and ship it to TFLite:

    import eb_tf
    from eb_tf.compat import keras

    model = eb_tf.add_bn_l1(model, strength=1e-4)            # network-slimming L1
    eb = eb_tf.EarlyBird(ratios=(0.5,), threshold=0.1, window=5)
    model.compile(...); model.fit(data, epochs=160, callbacks=[eb])
    ticket = eb_tf.prune(model, eb.tickets[0.5])             # fewer filters, exact

The public surface is listed below, one block per concept.
"""
from eb_tf import compat
from eb_tf.compat import keras

from eb_tf import io_utils

# Each block below is owned by one concept; keep imports inside the markers.
# >>> sparsity_masks_earlybird (issue 2)
from eb_tf.sparsity import BNRef, bn_layers, gammas
from eb_tf.masks import distance_matrix, mask_distance, masks_from_gammas
from eb_tf.sparsity import add_bn_l1, add_weight_decay, channel_masks
from eb_tf.early_bird import EarlyBird
# <<< sparsity_masks_earlybird

# >>> pruner (issue 3)
from eb_tf.flops import FlopsReport, ParamsReport, count_flops, count_params
from eb_tf.channel_summary import summary
from eb_tf.channel_select import ChannelSelect
from eb_tf.pruner import apply_masks, prune
from eb_tf.rounding import round_masks
# <<< pruner

# >>> models_data (issue 4)
from eb_tf import data, models  # tensorflow_datasets is imported only when a tfds set loads
# <<< models_data

# >>> pipeline (issue 5)
from eb_tf import config, train_lib
from eb_tf.ticket import Ticket, load_ticket
# <<< pipeline

# >>> quantize (issue 6)
from eb_tf import grad_quant, precision, quantize_configs
from eb_tf.quantize import (is_quantized, quantize_for_search, quantize_scope,
                            strip_quantization)
from eb_tf.precision import (PreparedModel, RETRAIN_PRECISIONS, SEARCH_PRECISIONS,
                             prepare_for_precision, strip_precision)
# <<< quantize

# >>> export (issue 7)
from eb_tf.export import ExportInfo, convert_tflite, export_tflite, is_qat_model
from eb_tf.litert_eval import LatencyStats, LiteRTModel, evaluate_accuracy, measure_latency
from eb_tf.edge_compare import Comparison, compare_models
from eb_tf.run_export import export_run
# <<< export

# >>> distribute (issue 10)
from eb_tf import distribute
from eb_tf.sync_bn import sync_batchnorm
# <<< distribute

# >>> tuning (issue 9)
from eb_tf import tuning
from eb_tf.tuning import EBTuner, TuneConfig, TuneResult, tune
# <<< tuning

# >>> bench (issue 8)
from eb_tf import bench  # its own matplotlib/tfmot imports wait until a benchmark runs
# <<< bench


__version__ = "0.1.0"
