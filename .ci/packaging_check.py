"""Run from an empty folder against an installed (non-editable) wheel: the public API works."""

import os
import sys

import numpy as np
from flax import nnx

import configs
import recjax
from recjax import native

here = os.getcwd()
for module in (recjax, configs):
    location = os.path.dirname(os.path.abspath(module.__file__))
    assert "site-packages" in location and not location.startswith(here), location
available, detail = native.availability()
assert available, f"the wheel lacks the native kernel: {detail}"
config = configs.get("rmc2-tiny")
model = config.build(nnx.Rngs(0))
predictor = recjax.CompiledPredictor(model, batch_sizes=[4])
probabilities = np.asarray(predictor(recjax.synthetic_features(config, 4, seed=0))["click"])
assert probabilities.shape == (4,) and np.all((probabilities > 0) & (probabilities < 1))
print(f"packaging check: {config.name} forward pass from {recjax.__file__}: {probabilities}")
sys.exit(0)
