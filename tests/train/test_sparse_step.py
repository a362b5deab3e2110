"""The sparse train step against jax.grad of the dense formulation, on tiny tables.

The reference differentiates the whole model (tables included) with the pure-JAX `gather_sum`
lowering, so the table gradient is the dense scatter of JAX's own transpose, and applies SGD or
row-wise Adagrad to every row of it by the textbook formulas. Tables of 5-7 rows with bags of up
to 5 ids repeat ids within bags, across samples and across features sharing a table. The presets
that read tables through `sparse_arch.pool_call` (Wide & Deep, DeepFM) and DIEN, whose recurrences
the step runs as scans, are checked the same way.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import configs
from recjax import native
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.train.embedding_optimizers import embedding_optimizer, rowwise_adagrad, sgd
from recjax.train.sparse_embeddings import (
    GivenLookups,
    RecordingSparseArch,
    SparseReads,
    read_values,
    split_model,
)
from recjax.train.step import TrainProgram
from tests.train.mixed_family import mixed_config

LEARNING_RATE = 0.1
EPSILON = 1e-8
# gather_sum and segment_sum equal pooling_loop (tests/layers): one pure-JAX lowering is enough.
LOWERINGS = ["pooling_loop"] + (["native"] if native.availability()[0] else [])


def batches(config, count, batch_size=8):
    """Synthetic batches with labels, some ragged bags emptied (length 0)."""
    out = []
    for index in range(count):
        batch = synthetic_features(config, batch_size, seed=10 + index, labels=True)
        lengths = np.array(batch.lengths)
        for column, feature in enumerate(config.features):
            if not feature.fixed_length:
                lengths[index % batch_size, column] = 0
        out.append(dataclasses.replace(batch, lengths=lengths))
    return out


def loss_of(model, batch):
    logits = model(batch.without_labels())
    return sum(
        optax.sigmoid_binary_cross_entropy(value, batch.labels[head]).mean()
        for head, value in logits.items()
    )


def dense_reference(config, seed, batch_list, optimizer):
    """Parameters and row accumulators after the steps, by jax.grad of the dense formulation (the
    model in training mode, as the step runs it)."""
    model = dataclasses.replace(config, embedding_lowering="gather_sum").build(nnx.Rngs(seed))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params = {path: variable[...] for path, variable in nnx.to_flat_state(params)}
    accumulators = {path: 0.0 for path in params if path[:2] == ("sparse_arch", "tables")}

    @jax.jit
    def gradient(params, batch):
        state = nnx.from_flat_state([(path, nnx.Param(value)) for path, value in params.items()])

        def loss(state):
            # copy=True: fresh variables of this trace (training mode updates batch statistics).
            return loss_of(nnx.merge(graphdef, state, rest, copy=True), batch)

        return jax.grad(loss)(state)

    for batch in batch_list:
        grads = {path: v[...] for path, v in nnx.to_flat_state(gradient(params, batch))}
        for path, grad in grads.items():
            if path in accumulators and optimizer == "rowwise_adagrad":
                accumulators[path] = accumulators[path] + jnp.mean(grad * grad, axis=1)
                step = grad / (jnp.sqrt(accumulators[path])[:, None] + EPSILON)
            else:
                step = grad
            params[path] = params[path] - LEARNING_RATE * step
    return params, accumulators


def sparse_run(config, seed, batch_list, optimizer):
    model = config.build(nnx.Rngs(seed))
    program = TrainProgram(
        model, optax.sgd(LEARNING_RATE), embedding_optimizer(optimizer, LEARNING_RATE)
    )
    state = program.init(model)
    for batch in batch_list:
        state, metrics = program.step(state, batch)
        assert np.isfinite(metrics["loss"])
    return program, state


@pytest.mark.parametrize("optimizer", ["sgd", "rowwise_adagrad"])
@pytest.mark.parametrize("lowering", LOWERINGS)
def test_every_feature_kind_matches_the_dense_gradient(lowering, optimizer):
    config = mixed_config(lowering)
    batch_list = batches(config, 3)
    program, state = sparse_run(config, 0, batch_list, optimizer)
    expected, accumulators = dense_reference(config, 0, batch_list, optimizer)
    got = {
        path: v[...] for path, v in nnx.to_flat_state(nnx.state(program.model(state), nnx.Param))
    }
    assert set(got) == set(expected)
    for path, value in expected.items():
        np.testing.assert_allclose(got[path], value, rtol=2e-5, atol=2e-6, err_msg=str(path))
    if optimizer == "rowwise_adagrad":
        for path, value in accumulators.items():
            np.testing.assert_allclose(
                state.embedding_optimizer["accumulators"][path[-1]], value, rtol=2e-5, atol=1e-9
            )
    # The tables moved, and rows that no batch looked up did not.
    initial = mixed_config().build(nnx.Rngs(0)).sparse_arch.table_buffers()
    for group, table in state.tables.items():
        assert not np.array_equal(table, initial[group])


def test_a_dlrm_preset_matches_the_dense_gradient_with_mean_weighted_and_ragged_bags():
    config = configs.get("rmc1-tiny")
    features = list(config.features)
    features[1] = dataclasses.replace(features[1], pooling="mean")
    features[2] = dataclasses.replace(features[2], weighted=True, fixed_length=False)
    tables = tuple(dataclasses.replace(table, num_rows=9) for table in config.tables)
    config = dataclasses.replace(config, features=tuple(features), tables=tables)
    batch_list = batches(config, 2, batch_size=4)
    for optimizer in ("sgd", "rowwise_adagrad"):
        program, state = sparse_run(config, 3, batch_list, optimizer)
        expected, _ = dense_reference(config, 3, batch_list, optimizer)
        got = dict(nnx.to_flat_state(nnx.state(program.model(state), nnx.Param)))
        for path, value in expected.items():
            np.testing.assert_allclose(got[path][...], value, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "rowwise_adagrad"])
@pytest.mark.parametrize("name", ["wnd-tiny", "mtwnd-tiny", "deepfm-tiny", "dien-tiny"])
def test_pool_call_and_recurrent_presets_match_the_dense_gradient(name, optimizer):
    """One step. Wide & Deep's wide tables and DeepFM's first-order tables are read through
    `sparse_arch.pool_call`; DIEN's default recurrences are while loops, which jax.grad cannot
    differentiate, so its reference is the same model with recurrence_loop="scan" (the same
    function, see tests/layers/test_recurrent.py). Tables of 9 rows repeat ids across samples."""
    config = configs.get(name)
    tables = tuple(dataclasses.replace(table, num_rows=9) for table in config.tables)
    config = dataclasses.replace(config, tables=tables)
    batch_list = batches(config, 1)
    program, state = sparse_run(config, 4, batch_list, optimizer)
    differentiable = {"recurrence_loop": "scan"} if name == "dien-tiny" else {}
    expected, _ = dense_reference(
        dataclasses.replace(config, **differentiable), 4, batch_list, optimizer
    )
    got = {
        path: v[...] for path, v in nnx.to_flat_state(nnx.state(program.model(state), nnx.Param))
    }
    assert set(got) == set(expected)
    for path, value in expected.items():
        np.testing.assert_allclose(got[path], value, rtol=2e-5, atol=2e-6, err_msg=str(path))
    initial = config.build(nnx.Rngs(4)).sparse_arch.table_buffers()
    for group, table in state.tables.items():  # the dim-1 group ("d1_float32") too
        assert not np.array_equal(table, initial[group]), group
    if name == "dien-tiny":
        assert program.reads.pool_calls == ()
        assert set(program.scanned_recurrences) == {"interest_extractor", "interest_evolution"}
    else:
        assert program.reads.lookups and len(program.reads.pool_calls) > 0


def test_duplicate_ids_sum_before_the_rowwise_adagrad_step():
    """By hand: one table of 3 rows, one bag [1, 1, 2] of a sum feature, d loss / d pooled = g.

    Row 1's gradient is 2g (summed first), so a_1 = mean((2g)^2) and the step is
    -lr * 2g / (|2g|_rms + eps): the same size as row 2's, not twice it (which is what two
    separate updates, or squaring before summing, would give).
    """
    from recjax.train.sparse_embeddings import LookupGradient

    g = jnp.asarray([[[3.0, -4.0]]])  # [B=1, T=1, D=2]
    gradient = LookupGradient(
        rows=jnp.asarray([[[1, 1, 2]]], jnp.int32),
        factors=jnp.ones((1, 1, 3)),
        grads=g,
        group="d2_float32",
        tables=("t",),
        pooled=True,
    )
    table = jnp.zeros((3, 2))
    optimizer = rowwise_adagrad(0.5, epsilon=0.0)
    state = optimizer.init({"d2_float32": table})
    tables, state = jax.jit(optimizer.update)([gradient], state, {"d2_float32": table})
    rms = np.sqrt(np.mean(np.asarray([3.0, -4.0]) ** 2))  # |g|_rms = 3.5355
    np.testing.assert_allclose(tables["d2_float32"][0], [0, 0])
    np.testing.assert_allclose(tables["d2_float32"][1], -0.5 * np.asarray([6, -8]) / (2 * rms))
    np.testing.assert_allclose(tables["d2_float32"][2], -0.5 * np.asarray([3, -4]) / rms)
    np.testing.assert_allclose(state["accumulators"]["d2_float32"], [0, 4 * rms**2, rms**2])
    sgd_tables, _ = jax.jit(sgd(0.5).update)([gradient], {"count": 0}, {"d2_float32": table})
    np.testing.assert_allclose(sgd_tables["d2_float32"][1], -0.5 * np.asarray([6, -8]))


def test_the_step_forms_no_dense_table_gradient():
    """Compiled for a 20 MB table, the step's temporaries stay far below the table's size, and
    the table buffer is updated in place (its input aliases its output)."""
    config = configs.get("rmc2-tiny")
    config = dataclasses.replace(
        config, tables=tuple(dataclasses.replace(t, num_rows=2_500) for t in config.tables)
    )
    table_bytes = config.table_bytes  # 32 x 2,500 x 64 x 4 = 20.5 MB
    model = config.build(nnx.Rngs(0))
    for optimizer in ("sgd", "rowwise_adagrad"):
        program = TrainProgram(model, optax.sgd(0.1), embedding_optimizer(optimizer, 0.1))
        state = jax.eval_shape(lambda m=model, p=program: p.init(m))
        batch = synthetic_features(config, 32, seed=0, labels=True)
        compiled = program.step.lower(state, batch).compile()
        memory = compiled.memory_analysis()
        # Batch 32 looks up 3,840 rows of each table: its [3840, 64] gradients are 1 MB.
        assert memory.temp_size_in_bytes < table_bytes / 5, (optimizer, memory)
        assert memory.alias_size_in_bytes >= table_bytes, (optimizer, memory)


def test_given_lookups_replay_the_recorded_reads_and_refuse_others():
    config = configs.get("deepfm-tiny")
    model = config.build(nnx.Rngs(0))
    batch = to_device(synthetic_features(config, 2, seed=0))
    sparse_arch = model.sparse_arch
    recorder = RecordingSparseArch(sparse_arch)
    expected = model(batch)
    model.sparse_arch = recorder
    np.testing.assert_array_equal(model(batch)["click"], expected["click"])
    reads = recorder.reads()
    assert reads == SparseReads(True, model.first_order_calls)
    values = read_values(sparse_arch, reads, batch)
    given = GivenLookups(values, reads, sparse_arch.layout)
    model.sparse_arch = given
    np.testing.assert_array_equal(model(batch)["click"], expected["click"])
    assert set(given(batch)) == {feature.name for feature in config.features}
    with pytest.raises(ValueError, match="did not when its reads were recorded"):
        given.pool_call(sparse_arch.pooled_calls[0], batch)
    for stand_in in (given, recorder):
        with pytest.raises(AttributeError, match=r"and `model.sparse_arch.pool_call\(call, batch"):
            stand_in.table_buffers()
    with pytest.raises(ValueError, match="EmbeddingCollection"):
        split_model(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))


def test_dropout_state_is_threaded_through_the_step():
    config = mixed_config(dropout=0.5)
    model = config.build(nnx.Rngs(0))
    program = TrainProgram(model, optax.sgd(0.1), sgd(0.1))
    state = program.init(model)
    counts = []
    batch = batches(config, 1)[0]
    for _ in range(2):
        state, _ = program.step(state, batch)
        counts.append(int(jax.tree.leaves(state.rest)[0]))
    assert counts[1] == counts[0] + 1
    # Evaluation mode: no dropout, so the same batch gives the same predictions twice.
    first = program.predict(state, batch)
    np.testing.assert_array_equal(first["like"], program.predict(state, batch)["like"])


@pytest.mark.skipif(not native.availability()[0], reason="the native library is not built")
def test_jax_grad_through_the_native_lowering_equals_the_pure_jax_gradient():
    """The native kernel's custom VJP: dense table and weight gradients like gather_sum's."""
    config = mixed_config("native")
    batch = to_device(batches(config, 1)[0])
    grads = {}
    for lowering in ("native", "gather_sum"):
        model = dataclasses.replace(config, embedding_lowering=lowering).build(nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(params, weights, graphdef=graphdef, rest=rest):
            model = nnx.merge(graphdef, params, rest)
            return loss_of(model, dataclasses.replace(batch, weights=weights))

        grads[lowering] = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, batch.weights)
    native_grads, reference = (jax.tree.leaves(grads[name]) for name in ("native", "gather_sum"))
    assert len(native_grads) == len(reference)
    for got, expected in zip(native_grads, reference, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(jax.tree.leaves(grads["native"][1])[0]).sum() > 0  # weights got a gradient


@pytest.mark.parametrize("use_native", [False, True] if native.has_sparse_row_update() else [False])
@pytest.mark.parametrize("pooled", [True, False])
def test_sgd_update_equals_numpy_add_at_with_repeated_rows(pooled, use_native):
    from recjax.train.sparse_embeddings import LookupGradient

    rng = np.random.default_rng(0)
    batch, slots, capacity, dim, num_rows = 6, 3, 5, 4, 9
    rows = rng.integers(0, num_rows, (batch, slots, capacity)).astype(np.int32)
    factors = rng.random((batch, slots, capacity)).astype(np.float32)
    factors[0, 0, 2:] = 0.0  # padding
    shape = (batch, slots, dim) if pooled else (batch, slots, capacity, dim)
    grads = rng.normal(size=shape).astype(np.float32)
    table = rng.normal(size=(num_rows, dim)).astype(np.float32)
    gradient = LookupGradient(rows, factors, grads, "g", ("x", "y", "z"), pooled)
    optimizer = sgd(lambda count: 0.5 / (1 + count), use_native=use_native)
    update = jax.jit(optimizer.update, donate_argnums=2)
    got, state = update([gradient], {"count": jnp.int32(1)}, {"g": jnp.asarray(table)})
    expected = table.copy()
    per_lookup = factors[..., None] * (grads[:, :, None, :] if pooled else grads)
    np.add.at(expected, rows.reshape(-1), -0.25 * per_lookup.reshape(-1, dim))
    np.testing.assert_allclose(got["g"], expected, rtol=1e-5, atol=1e-6)
    assert int(state["count"]) == 2


@pytest.mark.parametrize(
    "use_native", [False, True] if native.has_sparse_rowwise_adagrad() else [False]
)
@pytest.mark.parametrize("pooled", [True, False])
def test_rowwise_adagrad_update_equals_numpy_with_repeated_and_shared_rows(pooled, use_native):
    """Slots 0 and 1 read table x (rows 0-99 and 4,600 of the stacked buffer), slot 2 table z
    (rows 5,000-5,099 and 8,999); rows repeat within and across bags; 9,000 rows split the
    native kernel's work over two row ranges."""
    from recjax.train.sparse_embeddings import LookupGradient

    rng = np.random.default_rng(1)
    batch, slots, capacity, dim, num_rows = 16, 3, 6, 4, 9_000
    rows = np.empty((batch, slots, capacity), np.int32)
    rows[:, :2] = rng.choice([4_600, *range(100)], (batch, 2, capacity))
    rows[:, 2] = rng.choice([8_999, *range(5_000, 5_100)], (batch, capacity))
    factors = rng.random((batch, slots, capacity)).astype(np.float32)
    factors[0, 0, 2:] = 0.0  # padding
    shape = (batch, slots, dim) if pooled else (batch, slots, capacity, dim)
    grads = rng.normal(size=shape).astype(np.float32)
    table = rng.normal(size=(num_rows, dim)).astype(np.float32)
    accumulator = rng.random(num_rows).astype(np.float32)
    gradient = LookupGradient(rows, factors, grads, "g", ("x", "x", "z"), pooled)
    optimizer = rowwise_adagrad(
        lambda count: 0.5 / (1 + count), epsilon=1e-3, use_native=use_native
    )
    update = jax.jit(optimizer.update, donate_argnums=(1, 2))
    state = {"count": jnp.int32(1), "accumulators": {"g": jnp.asarray(accumulator)}}
    got, state = update([gradient], state, {"g": jnp.asarray(table)})

    summed = np.zeros_like(table, dtype=np.float64)
    per_lookup = factors[..., None] * (grads[:, :, None, :] if pooled else grads)
    np.add.at(summed, rows.reshape(-1), per_lookup.reshape(-1, dim))
    expected_accumulator = accumulator + np.mean(summed**2, axis=1)
    expected = table - 0.25 * summed / (np.sqrt(expected_accumulator)[:, None] + 1e-3)
    np.testing.assert_allclose(state["accumulators"]["g"], expected_accumulator, rtol=1e-5)
    np.testing.assert_allclose(got["g"], expected, rtol=1e-5, atol=1e-6)
    assert int(state["count"]) == 2


def test_rowwise_adagrad_sums_a_group_read_by_two_calls_before_its_step():
    """Two calls (a pooled and a sequence feature) read one table: its rows step once, with the
    sum of both calls' gradients (the XLA path, native library or not)."""
    from recjax.train.sparse_embeddings import LookupGradient

    pooled = LookupGradient(
        rows=jnp.asarray([[[1, 2]]], jnp.int32),
        factors=jnp.ones((1, 1, 2)),
        grads=jnp.asarray([[[1.0, 2.0]]]),
        group="g",
        tables=("t",),
        pooled=True,
    )
    sequence = LookupGradient(
        rows=jnp.asarray([[[1, 0]]], jnp.int32),
        factors=jnp.asarray([[[1.0, 0.0]]]),
        grads=jnp.asarray([[[[3.0, 2.0], [5.0, 5.0]]]]),
        group="g",
        tables=("t",),
        pooled=False,
    )
    optimizer = rowwise_adagrad(1.0, epsilon=0.0)
    tables = {"g": jnp.zeros((3, 2))}
    got, state = jax.jit(optimizer.update)([pooled, sequence], optimizer.init(tables), tables)
    row_1 = np.asarray([4.0, 4.0])  # [1, 2] + [3, 2]
    np.testing.assert_allclose(got["g"][1], -row_1 / np.sqrt(np.mean(row_1**2)))
    np.testing.assert_allclose(got["g"][2], -np.asarray([1.0, 2.0]) / np.sqrt(2.5))
    np.testing.assert_allclose(got["g"][0], [0.0, 0.0])
    np.testing.assert_allclose(state["accumulators"]["g"], [0.0, 16.0, 2.5])
