"""Embedding tables sharded over a device mesh and across processes (jax.distributed, shard_map)."""
