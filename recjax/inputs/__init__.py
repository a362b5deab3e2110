"""Model inputs: tables, features, the keyed batch, synthetic inputs (with per-table id
distributions and their locality) and input checks."""

from recjax.inputs.checks import InvalidInputError as InvalidInputError
from recjax.inputs.features import FeatureConfig as FeatureConfig
from recjax.inputs.features import Features as Features
from recjax.inputs.features import TableConfig as TableConfig
from recjax.inputs.features import make_features as make_features
from recjax.inputs.id_distributions import parse_id_spec as parse_id_spec
from recjax.inputs.locality import measure_locality as measure_locality
from recjax.inputs.synthetic import abstract_features as abstract_features
from recjax.inputs.synthetic import synthetic_features as synthetic_features
from recjax.inputs.synthetic import to_device as to_device
