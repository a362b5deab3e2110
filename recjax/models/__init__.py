"""Recommendation model architectures, one file per family."""

from recjax.models.dlrm import DLRM as DLRM
from recjax.models.dlrm import DLRMConfig as DLRMConfig
from recjax.models.dlrm import abstract_model as abstract_model
from recjax.models.dlrm import uniform_tables as uniform_tables
