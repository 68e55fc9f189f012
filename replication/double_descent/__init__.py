"""Superposition, memorisation and double descent (Henighan et al. 2023) on the toy-model engine.

A sweep over training-set sizes T trains as the instances of one batched model: every T owns
several independent fixed training sets (each trained by one or more replicates), and the
differently sized sets share one packed layout (:mod:`.packing`), so no Python loop runs over T,
training sets or instances.
"""
