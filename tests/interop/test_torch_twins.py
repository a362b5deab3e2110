"""Family name -> PyTorch twin: the DLRM's is found, a family without one is refused by name."""

import dataclasses
import importlib
import os
import re
import subprocess
import sys

import pytest
from flax import nnx

import configs
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.interop import torch_twins
from recjax.models import registry
from recjax.models.family import ModelConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyConfig(ModelConfig):
    """A config class of no registered family (the tests register it where they need it)."""


TOY = ToyConfig(
    name="toy",
    tables=(TableConfig("items", 10, 4),),
    features=(FeatureConfig("item", "items", capacity=1),),
    dense_features=0,
)


@dataclasses.dataclass
class ToyModel:
    """Stands in for a module: the twin lookup reads only `model.config`."""

    config: ModelConfig


def test_every_twin_belongs_to_a_registered_family():
    assert torch_twins.TWINS["dlrm"] == "recjax.interop.torch_dlrm"
    assert torch_twins.TWINS["ncf"] == "recjax.interop.torch_ncf"
    assert torch_twins.TWINS["deepfm"] == "recjax.interop.torch_deepfm"
    assert torch_twins.TWINS["dcnv2"] == "recjax.interop.torch_dcnv2"
    assert torch_twins.TWINS["din"] == "recjax.interop.torch_din"
    assert set(torch_twins.TWINS) <= set(registry.FAMILIES)
    assert set(torch_twins.TWINS) <= set(registry.FAMILIES)


@pytest.mark.parametrize("name", ["ncf-tiny", "wnd-tiny", "mtwnd-tiny"])
def test_the_zoo_presets_have_a_twin_of_their_family(name):
    pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
    config = configs.get(name)
    assert torch_twins.has_torch_twin(config) is True
    module = importlib.import_module(torch_twins.TWINS[registry.family_of(config)])
    assert hasattr(module, "TorchPredictor")


@pytest.mark.parametrize("name", ["rmc1-tiny", "rmc2-tiny", "rmc3-tiny"])
def test_the_dlrm_presets_have_a_twin(name):
    assert torch_twins.has_torch_twin(configs.get(name)) is True


def test_the_dlrm_twin_is_found_and_runs_the_model():
    pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
    torch_dlrm = importlib.import_module("recjax.interop.torch_dlrm")
    model = configs.get("rmc2-tiny").build(nnx.Rngs(0))
    predictor = torch_twins.torch_predictor(model)
    assert type(predictor) is torch_dlrm.TorchPredictor
    assert predictor.config is model.config


def test_an_unregistered_family_class_is_refused_with_the_registered_ones():
    registered = re.escape(str(sorted(registry.FAMILIES)))
    message = rf"ToyConfig is not a registered model family; registered: {registered}"
    with pytest.raises(ValueError, match=message):
        torch_twins.has_torch_twin(TOY)
    with pytest.raises(ValueError, match=message):
        torch_twins.torch_predictor(ToyModel(TOY))


def test_a_family_without_a_twin_is_refused_with_the_families_that_have_one(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "toy", ToyConfig)
    assert torch_twins.has_torch_twin(TOY) is False
    with pytest.raises(
        ValueError,
        match=rf"toy: the model family 'toy' has no PyTorch twin; families with one: "
        rf"{re.escape(str(sorted(torch_twins.TWINS)))}",
    ):
        torch_twins.torch_predictor(ToyModel(TOY))


def test_importing_the_twin_map_imports_neither_torch_nor_a_twin():
    code = (
        "import sys\n"
        "import configs\n"
        "from recjax.interop import torch_twins\n"
        "assert torch_twins.has_torch_twin(configs.get('rmc1-tiny'))\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('recjax.interop.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "['recjax.interop.torch_twins']"


def test_set_torch_threads_refuses_a_count_below_one():
    with pytest.raises(ValueError, match="num_threads must be positive; got -1"):
        torch_twins.set_torch_threads(-1)
