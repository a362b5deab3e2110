"""recjax: deep-learning recommendation models on JAX/XLA, and the tools to measure them.

The public API, one name per line; presets are found by name in the top-level `configs` package:

    import configs, recjax
    from flax import nnx

    config = configs.get("rmc2-tiny")
    model = config.build(nnx.Rngs(0))
    predictor = recjax.CompiledPredictor(model, batch_sizes=[4])
    predictor(recjax.synthetic_features(config, 4, seed=0))["click"]   # [4] probabilities
"""

from recjax.inputs.checks import InvalidInputError as InvalidInputError
from recjax.inputs.features import FeatureConfig as FeatureConfig
from recjax.inputs.features import Features as Features
from recjax.inputs.features import TableConfig as TableConfig
from recjax.inputs.features import make_features as make_features
from recjax.inputs.synthetic import abstract_features as abstract_features
from recjax.inputs.synthetic import synthetic_features as synthetic_features
from recjax.models.family import ModelConfig as ModelConfig
from recjax.models.family import Stage as Stage
from recjax.models.family import abstract_model as abstract_model
from recjax.models.registry import FAMILIES as FAMILIES
from recjax.runtime.inference import CompiledPredictor as CompiledPredictor
from recjax.runtime.inference import EagerPredictor as EagerPredictor
