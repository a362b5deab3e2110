"""The training loop on tiny Criteo files: bitwise resume, Ctrl-C, checkpoint mismatches."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import configs
from recjax.models.registry import FAMILIES
from recjax.train.checkpoints import (
    CheckpointMismatchError,
    TrainCheckpointer,
    arrays_equal,
    restore_model,
)
from recjax.train.criteo import CriteoMapping
from recjax.train.data import CriteoSource, SyntheticSource
from recjax.train.loop import HeldOut, Trainer, TrainSettings
from recjax.train.planted import write_planted_files
from recjax.train.prefetch import Prefetcher
from tests.train.mixed_family import MixedConfig, mixed_config

BATCH = 16


@pytest.fixture(autouse=True)
def mixed_family_registered(monkeypatch):
    """Checkpoints name the model's family: register the test family for these tests."""
    monkeypatch.setitem(FAMILIES, "mixed-test", MixedConfig)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted_files(
        str(tmp_path_factory.mktemp("planted")), 700, 100, vocabulary=30, seed=1
    )


def settings(steps, **changes):
    values = dict(
        steps=steps,
        batch_size=BATCH,
        optimizer="adam",
        learning_rate=0.01,
        embedding_optimizer="rowwise_adagrad",
        embedding_learning_rate=0.1,
        log_every=2,
        checkpoint_every=3,
    )
    return TrainSettings(**{**values, **changes})


def trainer(config, planted, steps, directory=None, seed=0, **changes):
    mapping = CriteoMapping(config)
    # Windows of 50 lines: batches of 16 cross windows, and 700 lines are 2 files, 14 windows.
    source = CriteoSource(planted.train_paths, mapping, BATCH, seed=5, window_lines=50)
    return Trainer(
        config.build(nnx.Rngs(seed)),
        settings(steps, **changes),
        source,
        evaluation=HeldOut([planted.eval_path], mapping),
        checkpointer=TrainCheckpointer(directory) if directory else None,
        progress=lambda line: None,
    )


def test_a_resumed_run_continues_bitwise_like_an_uninterrupted_one(planted, tmp_path):
    config = mixed_config(dropout=0.3)  # dropout: the RNG state must be restored too
    whole = trainer(config, planted, 50).run()
    first = trainer(config, planted, 21, tmp_path / "ckpt").run()
    assert first.checkpoints == [3, 6, 9, 12, 15, 18, 21]
    # A different seed: nothing of the fresh model may survive the restore.
    resumed_trainer = trainer(config, planted, 50, tmp_path / "ckpt", seed=9)
    resumed = resumed_trainer.run()
    assert resumed.start_step == 21 and resumed.final_step == 50
    assert resumed.step_losses == whole.step_losses[21:]
    assert first.step_losses == whole.step_losses[:21]
    assert arrays_equal(resumed.state, whole.state)
    assert resumed.evaluations[-1]["heads"] == whole.evaluations[-1]["heads"]
    # The trained model, restored for inference, predicts what the training state predicts.
    model, meta = restore_model(str(tmp_path / "ckpt"), config)
    assert meta["step"] == 50
    program = resumed_trainer.program
    mapping = CriteoMapping(config)
    batch = next(iter(CriteoSource([planted.eval_path], mapping, 8).batches()))[0]
    expected = program.predict(resumed.state, jax.device_put(batch.without_labels()))
    model.eval()
    got = model(jax.device_put(batch.without_labels()))
    for head in config.heads:
        np.testing.assert_array_equal(jax.nn.sigmoid(got[head]), expected[head])


class InterruptingSource:
    """A source whose `after`-th batch is a Ctrl-C."""

    def __init__(self, source, after):
        self.source, self.after, self.batch_size = source, after, source.batch_size

    def batches(self, start=None):
        for index, item in enumerate(self.source.batches(start)):
            if index == self.after:
                raise KeyboardInterrupt
            yield item

    def settings(self):
        return self.source.settings()


def test_ctrl_c_keeps_the_last_complete_checkpoint_and_a_rerun_resumes(planted, tmp_path):
    config = configs.get("rmc1-tiny")
    run = trainer(config, planted, 12, tmp_path)
    run.source = InterruptingSource(run.source, after=7)
    result = run.run()
    assert result.interrupted and result.final_step == 7 and result.checkpoints == [3, 6]
    assert TrainCheckpointer(tmp_path).latest_step() == 6
    resumed = trainer(config, planted, 12, tmp_path).run()
    whole = trainer(config, planted, 12).run()
    assert resumed.start_step == 6 and arrays_equal(resumed.state, whole.state)


def test_an_interrupted_save_leaves_the_previous_checkpoint(planted, tmp_path, monkeypatch):
    config = configs.get("rmc1-tiny")
    trainer(config, planted, 3, tmp_path).run()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ocp.JsonCheckpointHandler, "async_save", interrupted)
    monkeypatch.setattr(ocp.JsonCheckpointHandler, "save", interrupted)
    result = trainer(config, planted, 6, tmp_path).run()
    assert result.interrupted
    monkeypatch.undo()
    assert TrainCheckpointer(tmp_path).latest_step() == 3  # the partial step 6 is not taken
    model, meta = restore_model(str(tmp_path), config)
    assert meta["step"] == 3 and model.config == config
    resumed = trainer(config, planted, 6, tmp_path).run()
    assert resumed.start_step == 3 and resumed.checkpoints == [6]
    assert sorted(os.listdir(tmp_path)) == ["3", "6"]  # the partial save was replaced


def test_a_checkpoint_of_another_preset_or_optimizer_is_refused_by_name(planted, tmp_path):
    trainer(configs.get("rmc1-tiny"), planted, 3, tmp_path).run()
    with pytest.raises(
        CheckpointMismatchError,
        match=r"holds rmc1-tiny, which does not fit "
        r"rmc2-tiny; they differ in bottom_mlp: .*dense_features: checkpoint 128",
    ):
        restore_model(str(tmp_path), configs.get("rmc2-tiny"))
    with pytest.raises(
        CheckpointMismatchError,
        match=r"holds rmc1-tiny.*features: checkpoint "
        r"8 \(capacity 80, pooling sum\), model 32",
    ):
        trainer(configs.get("rmc2-tiny"), planted, 6, tmp_path).run()
    with pytest.raises(
        CheckpointMismatchError,
        match=r"other optimizer settings.*"
        r"embedding_optimizer: checkpoint 'rowwise_adagrad', this run 'sgd'",
    ):
        trainer(configs.get("rmc1-tiny"), planted, 6, tmp_path, embedding_optimizer="sgd").run()
    with pytest.raises(FileNotFoundError, match="No complete checkpoint"):
        os.makedirs(tmp_path / "empty")
        restore_model(str(tmp_path / "empty"), configs.get("rmc1-tiny"))


def test_synthetic_source_resumes_and_every_head_is_evaluated(planted):
    config = mixed_config()
    source = SyntheticSource(config, BATCH, seed=2, variants=3)
    batches = [batch for (batch, _), _ in zip(source.batches(), range(5), strict=False)]
    resumed = next(source.batches({"batches": 4}))[0]
    np.testing.assert_array_equal(resumed.ids, batches[4].ids)
    np.testing.assert_array_equal(batches[3].ids, batches[0].ids)  # 3 variants in turn
    result = Trainer(
        config.build(nnx.Rngs(0)),
        settings(4, checkpoint_every=0),
        source,
        evaluation=HeldOut([planted.eval_path], CriteoMapping(config), max_examples=40),
        progress=lambda line: None,
    ).run()
    heads = result.evaluations[-1]["heads"]
    assert set(heads) == {"click", "like"} and heads["click"]["examples"] == 40
    assert result.samples_per_second > 0 and 0 <= result.waited_fraction <= 1
    assert len(result.step_losses) == 4 and [entry["step"] for entry in result.log] == [2, 4]


def test_prefetcher_hands_over_errors_and_counts_waiting():
    def items():
        yield 1
        yield 2
        raise RuntimeError("broken file")

    with Prefetcher(items(), transform=lambda x: x * 10, depth=1) as prefetcher:
        assert next(prefetcher) == 10 and next(prefetcher) == 20
        with pytest.raises(RuntimeError, match="broken file"):
            next(prefetcher)
        assert prefetcher.waited_seconds >= 0 and prefetcher.taken == 2
    with Prefetcher(iter(range(3))) as prefetcher:
        assert list(prefetcher) == [0, 1, 2]
