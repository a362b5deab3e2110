"""Reporting runs: machine fingerprint, TensorBoard summaries, run directories, results."""
