"""benchmarks.machine builds no model: it refuses the model flags before measuring anything."""

from tests.binaries.binary import run_binary


def test_model_flags_are_refused():
    result = run_binary("machine", "--model=rmc1-tiny", "--override=top_mlp=1")
    assert result.returncode != 0
    assert "measures the machine, not a model; --model, --override does not apply" in result.stderr
