"""recjax: deep-learning recommendation models on JAX/XLA, and the tools to measure them."""
