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

# --- sparsity: BN discovery and the network-slimming penalty ----------------------
from eb_tf.sparsity import BNRef, bn_layers, gammas

__version__ = "0.1.0"
