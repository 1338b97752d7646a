"""Structured pruning: rebuild a functional model with the masked channels removed.

Modules in import order: `graph` (the layer graph of a functional model), `channel_select`
(the gather layer), `handlers` (one small handler per layer type: the registry),
`dispatch` (which handler a layer call gets; layers it cannot map become barriers),
`passes` and `plan` (which layers share a channel space and what each keeps), `liveness` (masks
that would make an output a constant are refused), `pruner`
(`apply_masks`, `prune`), `rounding` (`round_masks`), `flops` (FLOPs and parameters),
`channel_summary` (`summary`) and `testing` (random graphs and liveness checks for tests).

Example:

    from eb_tf import pruning
    ticket = pruning.prune(model, masks)          # fewer filters, same outputs
    pruning.count_flops(ticket).total, pruning.summary(model, masks).table()

Every step reads tf_keras and Keras 3 models alike (see `graph`); a Keras 3 ticket is a
Keras 3 model whose gathers are `Keras3ChannelSelect`.
"""
from eb_tf.pruning.channel_select import ChannelSelect, Keras3ChannelSelect
from eb_tf.pruning.channel_summary import summary
from eb_tf.pruning.flops import FlopsReport, ParamsReport, count_flops, count_params
from eb_tf.pruning.pruner import apply_masks, prune
from eb_tf.pruning.rounding import round_masks

__all__ = ["apply_masks", "prune", "round_masks", "summary", "ChannelSelect",
           "Keras3ChannelSelect", "count_flops", "count_params", "FlopsReport", "ParamsReport"]
