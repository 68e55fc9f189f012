"""Superposition replication suite: the library every claim test is built on."""
