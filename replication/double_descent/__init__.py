"""Superposition, memorisation and double descent (Henighan et al. 2023) on the toy-model engine.

A sweep over training-set sizes T trains as the instances of one batched model: every
(T, replicate) pair owns a fixed training set, and the differently sized sets share one
packed layout (:mod:`.packing`), so no Python loop runs over T or instances.
"""
