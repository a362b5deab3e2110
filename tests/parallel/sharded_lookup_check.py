"""Every sharding type against the unsharded lookup and NumPy, on simulated devices.

Run by tests/parallel/test_sharded_collection.py in a fresh process with 4 CPU devices:

    JAX_NUM_CPU_DEVICES=4 python -m tests.parallel.sharded_lookup_check --lowering=gather_sum

Prints one JSON line: {case: {"vs_collection": max |sharded - EmbeddingCollection|,
"vs_numpy": max |sharded - NumPy|, "collectives": sorted collective ops of the compiled program,
"largest_collective": the most elements any collective moves}}.
"""

import argparse
import json
import re
import types

import jax
import numpy as np
from flax import nnx

from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.inputs.synthetic import synthetic_features
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.parallel import sharding
from recjax.parallel.sharded_collection import ShardedEmbeddingCollection, device_mesh
from recjax.parallel.table_init import full_table, table_rows

SEED = 3
BATCH = 8
# Fixed, ragged, mean, weighted and sequence features; two dims; two features on one table.
TABLES = (
    TableConfig("t0", 50, 8),
    TableConfig("t1", 37, 8),
    TableConfig("t2", 64, 8),
    TableConfig("t3", 9, 4),
    TableConfig("t4", 100, 8),
)
FEATURES = (
    FeatureConfig("fixed_sum", "t0", 3),
    FeatureConfig("ragged_mean", "t1", 4, pooling="mean", fixed_length=False),
    FeatureConfig("ragged_weighted", "t2", 3, weighted=True, fixed_length=False),
    FeatureConfig("fixed_mean_d4", "t3", 2, pooling="mean"),
    FeatureConfig("sequence", "t4", 5, pooling="none", fixed_length=False),
    FeatureConfig("ragged_sum_shared", "t0", 3, fixed_length=False),
    FeatureConfig("weighted_mean_shared", "t2", 4, pooling="mean", weighted=True),
)
MIXED = {
    "t0": sharding.ShardingType.TABLE_WISE,
    "t1": sharding.ShardingType.ROW_WISE,
    "t2": sharding.ShardingType.COLUMN_WISE,
    "t3": sharding.ShardingType.DATA_PARALLEL,
    "t4": sharding.ShardingType.TABLE_ROW_WISE,
}
COLLECTIVES = ("all-to-all", "reduce-scatter", "all-gather", "all-reduce", "collective-permute")


def numpy_lookup(batch, tables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The definition: sum (or mean) of the valid ids' rows times their weights; rows of a
    sequence, zeros past its length."""
    out = {}
    for index, feature in enumerate(FEATURES):
        ids = np.asarray(batch.ids_of(feature.name))
        lengths = np.asarray(batch.lengths)[:, index]
        rows = tables[feature.table][ids]  # [B, C, D]
        valid = np.arange(feature.capacity)[None, :] < lengths[:, None]
        if feature.pooling != "none" and feature.fixed_length:
            valid = np.ones_like(valid)
        if feature.pooling == "none":
            out[feature.name] = rows * valid[:, :, None]
            continue
        scale = valid.astype(np.float32)
        if feature.weighted:
            scale = (
                scale
                * np.asarray(batch.weights)[:, batch.layout.columns[index] :][:, : feature.capacity]
            )
        pooled = (rows * scale[:, :, None]).sum(axis=1)
        if feature.pooling == "mean":
            divisor = feature.capacity if feature.fixed_length else np.maximum(lengths, 1)
            pooled = pooled / np.reshape(divisor, (-1, 1))
        out[feature.name] = pooled
    return out


def plans(mesh_shape: sharding.MeshShape) -> dict[str, sharding.ShardingPlan]:
    cases = {
        kind.value: sharding.uniform_plan(TABLES, kind, mesh_shape)
        for kind in sharding.ShardingType
    }
    mixed = []
    for index, table in enumerate(TABLES):
        one = sharding.uniform_plan([table], MIXED[table.name], mesh_shape).tables[0]
        if MIXED[table.name] is sharding.ShardingType.TABLE_WISE:
            one = sharding.table_wise(table, (index + 1) % mesh_shape.num_devices)
        mixed.append(one)
    cases["mixed"] = sharding.ShardingPlan(mesh_shape, tuple(mixed))
    return cases


def collectives(hlo: str) -> tuple[list[str], int]:
    """The collective ops of a compiled program and the most elements one of them returns."""
    found, largest = set(), 0
    for line in hlo.splitlines():
        match = re.search(r"= (.*?) (" + "|".join(COLLECTIVES) + r")(-start)?\(", line)
        if not match:
            continue
        found.add(match.group(2))
        for shape in re.findall(r"\[([\d,]*)\]", match.group(1)):
            largest = max(largest, int(np.prod([int(d) for d in shape.split(",") if d])))
    return sorted(found), largest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lowering", default="gather_sum")
    parser.add_argument("--meshes", default="2x2,1x4,4x1")
    parser.add_argument("--mixed_only", action="store_true", help="only the mixed plan")
    args = parser.parse_args()
    spec = types.SimpleNamespace(
        features=FEATURES,
        tables=TABLES,
        dense_features=0,
        table=lambda name: next(table for table in TABLES if table.name == name),
    )
    batch = synthetic_features(spec, BATCH, seed=1)
    full = {table.name: full_table(SEED, index, table) for index, table in enumerate(TABLES)}
    reference = EmbeddingCollection(TABLES, FEATURES, lowering=args.lowering, rngs=nnx.Rngs(0))
    for table in TABLES:
        group, offset = reference.table_group[table.name], reference.table_offset[table.name]
        values = np.array(reference.tables[group][...])
        values[offset : offset + table.num_rows] = full[table.name]
        reference.tables[group].set_value(values)
    expected = jax.jit(lambda b: reference(b))(batch)
    by_numpy = numpy_lookup(batch, full)
    results = {}
    for mesh_name in args.meshes.split(","):
        mesh_shape = sharding.MeshShape(*(int(n) for n in mesh_name.split("x")))
        mesh = device_mesh(mesh_shape)
        cases = plans(mesh_shape)
        if mesh_name != "2x2" or args.mixed_only:  # every type on 2x2; else the mixed plan
            cases = {"mixed": cases["mixed"]}
        for case, plan in cases.items():
            sharded = ShardedEmbeddingCollection(
                TABLES,
                FEATURES,
                plan,
                mesh,
                lowering=args.lowering,
                shard_values=lambda index, table, rows, columns: table_rows(
                    SEED, index, table, rows, columns
                ),
            )
            graphdef, state = nnx.split(sharded)
            compiled = (
                jax.jit(lambda state, batch, graphdef=graphdef: nnx.merge(graphdef, state)(batch))
                .lower(state, batch)
                .compile()
            )
            got = compiled(state, batch)
            ops, largest = collectives(compiled.as_text())
            results[f"{mesh_name}/{case}"] = {
                "vs_collection": max(
                    float(np.abs(np.asarray(got[k]) - np.asarray(expected[k])).max())
                    for k in expected
                ),
                "vs_numpy": max(
                    float(np.abs(np.asarray(got[k]) - by_numpy[k]).max()) for k in by_numpy
                ),
                "shapes_match": all(got[k].shape == expected[k].shape for k in expected),
                "collectives": ops,
                "largest_collective": largest,
                "output_sharded": all(
                    len(got[k].sharding.device_set) == mesh_shape.num_devices for k in got
                ),
            }
    # The checker must be able to see what it rejects: a gather left to the automatic partitioner.
    mesh = device_mesh(sharding.MeshShape(1, 4))
    devices = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("host", "local")))
    table = jax.device_put(full["t4"], devices)
    ids = jax.device_put(np.asarray(batch.ids_of("sequence")), devices)
    naive = jax.jit(lambda table, ids: table[ids].sum(axis=1)).lower(table, ids).compile()
    ops, largest = collectives(naive.as_text())
    results["naive"] = {"collectives": ops, "largest_collective": largest}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
