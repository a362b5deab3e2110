"""Recommendation model families, one module each, under one contract (`family.py`)."""

from recjax.models.dcnv2 import DCNv2Config as DCNv2Config
from recjax.models.deepfm import DeepFM as DeepFM
from recjax.models.deepfm import DeepFMConfig as DeepFMConfig
from recjax.models.dien import DIEN as DIEN
from recjax.models.dien import DIENConfig as DIENConfig
from recjax.models.din import DIN as DIN
from recjax.models.din import DINConfig as DINConfig
from recjax.models.dlrm import DLRM as DLRM
from recjax.models.dlrm import DLRMConfig as DLRMConfig
from recjax.models.family import ModelConfig as ModelConfig
from recjax.models.family import Stage as Stage
from recjax.models.family import abstract_model as abstract_model
from recjax.models.multitask_wide_deep import MultiTaskWideDeep as MultiTaskWideDeep
from recjax.models.multitask_wide_deep import MultiTaskWideDeepConfig as MultiTaskWideDeepConfig
from recjax.models.ncf import NCF as NCF
from recjax.models.ncf import NCFConfig as NCFConfig
from recjax.models.registry import FAMILIES as FAMILIES
from recjax.models.registry import family_of as family_of
from recjax.models.wide_deep import WideDeep as WideDeep
from recjax.models.wide_deep import WideDeepConfig as WideDeepConfig
