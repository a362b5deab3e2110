"""Training any model family: sparse embedding updates, Criteo-format data, metrics, checkpoints."""
