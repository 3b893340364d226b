"""Pruning with regeneration for spiking networks (see docs/methods.md for every method's source).

All methods share one loop (:func:`snnc.prune.trainer.prune`): train, score units from recorded
activity (or weights), prune the lowest to a mask, regenerate where the method says so, repeat on a
sparsity schedule, fine-tune. Masks are the blocks' ``channel_mask``/``weight_mask`` buffers
(snnc/nn/blocks.py). The methods are objects in ``snnc/prune/methods/``, listed by
:data:`snnc.prune.methods.registry.METHODS`.
"""
