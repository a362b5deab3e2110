"""The PyTorch twin trains like recjax: same initial weights, same batches, same losses (SGD)."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import configs
from recjax.inputs.synthetic import synthetic_features
from recjax.interop import torch_twins
from recjax.train.criteo import CriteoMapping
from recjax.train.data import CriteoSource
from recjax.train.embedding_optimizers import sgd
from recjax.train.loop import loss_agreement, run_twin
from recjax.train.planted import write_planted_files
from recjax.train.step import TrainProgram
from tests.train.mixed_family import mixed_config

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
torch_dlrm = pytest.importorskip("recjax.interop.torch_dlrm")

STEPS = 50


def test_recjax_and_torch_losses_agree_for_50_sgd_steps_on_rmc1_tiny(tmp_path):
    config = configs.get("rmc1-tiny")
    mapping = CriteoMapping(config)
    planted = write_planted_files(str(tmp_path), 32 * STEPS, 10, signal_categoricals=8, seed=3)
    source = CriteoSource(planted.train_paths, mapping, batch_size=32, seed=1)
    model = config.build(nnx.Rngs(0))
    # The twin copies the initial weights before recjax's first step donates them.
    trainer = torch_twins.torch_trainer(
        model,
        embedding_optimizer="sgd",
        embedding_learning_rate=0.05,
        optimizer="sgd",
        learning_rate=0.1,
    )
    program = TrainProgram(model, optax.sgd(0.1), sgd(0.05))
    state = program.init(model)
    recjax_losses = []
    for (batch, _), _ in zip(source.batches(), range(STEPS), strict=False):
        state, metrics = program.step(state, jax.device_put(batch))
        recjax_losses.append(float(metrics["loss"]))
    twin = run_twin(trainer, source, STEPS, progress=lambda line: None)
    agreement = loss_agreement(recjax_losses, twin.step_losses)
    assert agreement["steps"] == STEPS
    np.testing.assert_allclose(twin.step_losses, recjax_losses, rtol=2e-5, atol=1e-6)
    assert recjax_losses[-1] < recjax_losses[0]  # it learned something
    # The tables moved the same way, so the trained weights agree too.
    trained = program.model(state).sparse_arch.table_buffers()["d32_float32"][:1000]
    np.testing.assert_allclose(
        trainer.module.emb_l[0].weight.detach().numpy(), trained, rtol=1e-4, atol=1e-6
    )


def test_torch_rowwise_adagrad_runs_and_unsupported_settings_are_refused():
    config = configs.get("rmc1-tiny")
    model = config.build(nnx.Rngs(0))
    trainer = torch_dlrm.TorchTrainer(
        model,
        embedding_optimizer="rowwise_adagrad",
        embedding_learning_rate=lambda step: 0.1 / (1 + step),
        optimizer="adam",
        learning_rate=1e-3,
    )
    batch = synthetic_features(config, 8, seed=0, labels=True)
    losses = [trainer.step(trainer.prepare(batch)) for _ in range(3)]
    assert losses[2] < losses[0]
    assert trainer.optimizers["tables"].param_groups[0]["lr"] == pytest.approx(0.1 / 3)
    with pytest.raises(ValueError, match=r"no dense optimizer 'lion'; it trains with"):
        torch_dlrm.TorchTrainer(
            model,
            embedding_optimizer="sgd",
            embedding_learning_rate=0.1,
            optimizer="lion",
            learning_rate=0.1,
        )
    with pytest.raises(ValueError, match="is not a registered model family"):
        torch_twins.torch_trainer(mixed_config().build(nnx.Rngs(0)))
