"""H_pos: how local SAE features are in the input positions, layer by layer.

Modules, in the order data flows: ``hub`` (reachability, offline mode), ``corpus`` (texts and
seeded windows), ``bpe`` / ``tiny_lm`` / ``local_saes`` (the local preset built here),
``presets`` (the registry and the loaders), ``influence`` (batched input gradients),
``entropy`` (bits), ``sweep`` (tables over layers and window lengths), ``figures``,
``scales`` (the per-scale configurations), ``reference`` (published values, as data in
``published.json``) and ``__main__`` (the command line).
"""
