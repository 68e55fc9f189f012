"""The Toy Models of Superposition engine, shared by the TMS, double-descent and SAE claims.

Every tensor carries a leading instance axis: one instance is one (configuration, replicate)
pair, so a whole sweep over sparsities, importances or training-set sizes trains in one loop.
"""
