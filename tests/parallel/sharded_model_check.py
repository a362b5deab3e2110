"""A whole model with sharded tables against the unsharded model, on simulated devices.

Run by tests/parallel/test_sharded_model.py in a fresh process with 4 CPU devices:

    JAX_NUM_CPU_DEVICES=4 python -m tests.parallel.sharded_model_check

Prints one JSON line: {case: {"max_difference": max |sharded - unsharded| of the click
probabilities, "valid": the inputs check, "collectives": the compiled program's collectives}};
the int8 and int4 cases also hold "from_float32", max |sharded - unsharded float32 model|.
"""

import dataclasses
import json

import jax
import numpy as np

import configs
from recjax.parallel import sharding
from recjax.parallel.sharded_collection import device_mesh
from recjax.parallel.sharded_model import (
    ShardedPredictor,
    global_batch,
    host_batch,
    reference_model,
    shard_model,
)
from recjax.runtime.inference import CompiledPredictor
from tests.parallel.sharded_lookup_check import collectives

SEED = 2
BATCH = 8


def unsharded_clicks(config) -> np.ndarray:
    reference = CompiledPredictor(reference_model(config, SEED), [BATCH])
    return np.asarray(reference(host_batch(config, BATCH, SEED + 1, 4))["click"])


def main() -> None:
    float32 = configs.get("rmc1-tiny")
    configs_of = {
        dtype: dataclasses.replace(float32, table_dtype=dtype) for dtype in ("int8", "int4")
    }
    configs_of["float32"] = float32
    # The unsharded model's clicks, once per table dtype.
    expected_of = {dtype: unsharded_clicks(config) for dtype, config in configs_of.items()}
    results = {}
    cases = [
        ("2x2", "table_row_wise", "float32"),
        ("1x4", "column_wise", "float32"),
        ("4x1", "row_wise", "float32"),
        ("2x2", "table_row_wise", "int8"),
        ("4x1", "row_wise", "int4"),
    ]
    for mesh_name, kind, dtype in cases:
        config, expected = configs_of[dtype], expected_of[dtype]
        mesh_shape = sharding.MeshShape(*(int(n) for n in mesh_name.split("x")))
        mesh = device_mesh(mesh_shape)
        plan = sharding.uniform_plan(config.tables, kind, mesh_shape)
        predictor = ShardedPredictor(shard_model(config, plan, mesh, SEED), mesh)
        predictor.compile(BATCH)
        probabilities, valid = predictor(global_batch(config, BATCH, SEED + 1, mesh))
        got = probabilities["click"]
        name = f"{mesh_name}/{kind}" + ("" if dtype == "float32" else f"/{dtype}")
        if dtype != "float32":
            results.setdefault(name, {})["from_float32"] = float(
                np.abs(np.asarray(got) - expected_of["float32"]).max()
            )
        results.setdefault(name, {}).update(
            {
                "max_difference": float(np.abs(np.asarray(got) - expected).max()),
                "valid": bool(valid),
                "sharded_by_samples": len(got.sharding.device_set) == 4
                and not got.sharding.is_fully_replicated,
                "collectives": collectives(predictor.hlo_text(BATCH))[0],
            }
        )
    print(json.dumps(results))


if __name__ == "__main__":
    jax.config.update("jax_platforms", "cpu")
    main()
