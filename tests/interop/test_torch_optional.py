"""Without torch installed, the PyTorch baseline fails early and says how to install it."""

import importlib
import os
import subprocess
import sys

import pytest

import configs
from recjax.interop import torch_twins
from recjax.models.family import abstract_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTALL = r"pip install -e '\.\[torch\]'"


@pytest.fixture
def without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    monkeypatch.delitem(sys.modules, "recjax.interop.torch_dlrm", raising=False)


@pytest.mark.usefixtures("without_torch")
def test_import_without_torch_names_the_install_command():
    with pytest.raises(ImportError, match=INSTALL):
        importlib.import_module("recjax.interop.torch_dlrm")


@pytest.mark.usefixtures("without_torch")
def test_twins_without_torch_name_the_install_command():
    config = configs.get("rmc1-tiny")
    assert torch_twins.has_torch_twin(config)  # the family has a twin; torch is what is missing
    with pytest.raises(ImportError, match=INSTALL):
        torch_twins.require_torch()
    with pytest.raises(ImportError, match=INSTALL):
        torch_twins.set_torch_threads(1)
    # Before any work: the abstract model holds no weights to copy.
    with pytest.raises(ImportError, match=INSTALL):
        torch_twins.torch_predictor(abstract_model(config))


def test_latency_torch_mode_without_torch_fails_before_building(tmp_path):
    # A `torch` module that cannot be imported, shadowing any installed one.
    (tmp_path / "torch.py").write_text("raise ImportError('No module named torch (simulated)')\n")
    environment = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.latency", "--model=rmc1-tiny", "--modes=jit,torch"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "--modes=torch" in result.stderr
    assert "pip install -e '.[torch]'" in result.stderr
    assert "built the model" not in result.stdout
