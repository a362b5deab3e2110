r"""A sharding plan for a preset's tables over hosts: placement, bytes and estimated costs.

    python -m benchmarks.plan --model=dcnv2-full --hosts=8 --memory_per_host=24GiB
    python -m benchmarks.plan --model=dcnv2-full --hosts=4 --devices_per_host=2 \
        --memory_per_host=48GiB --batch_size=8192

Nothing is built or timed: the planner (`recjax.parallel.planner`) works from the tables' sizes
and the features' lookups. Prints one line per table (sharding type, placement, estimated ms on
its busiest device), then per device its table bytes, free bytes and estimated ms per batch, and
writes results.json into --logdir. A plan that cannot fit exits with the shortfall.
"""

import sys

from absl import app, flags

from benchmarks import flags as shared
from recjax.parallel import planner
from recjax.parallel.sharding import MeshShape
from recjax.reporting.run_reporter import RunReporter

_HOSTS = flags.DEFINE_integer("hosts", 8, "Hosts in the mesh.", lower_bound=1)
_DEVICES_PER_HOST = flags.DEFINE_integer(
    "devices_per_host",
    1,
    "Devices (JAX processes' devices) per host; each gets an equal share of the host's memory.",
    lower_bound=1,
)
_MEMORY_PER_HOST = flags.DEFINE_string(
    "memory_per_host", "24GiB", "Memory of each host, e.g. 24GiB, 512MiB, 24GB."
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 2048, "Samples per batch over the whole mesh.", lower_bound=1
)
_RESERVE = flags.DEFINE_float(
    "reserve",
    planner.CostModel.reserve_fraction,
    "Fraction of each device's memory kept for everything but table shards.",
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    shared.start_on_cpu()
    config = shared.model_config()
    try:
        memory_per_host = planner.parse_bytes(_MEMORY_PER_HOST.value)
        mesh = MeshShape(_HOSTS.value, _DEVICES_PER_HOST.value)
        cost_model = planner.CostModel(reserve_fraction=_RESERVE.value)
    except ValueError as error:
        raise app.UsageError(f"--memory_per_host or --reserve: {error}") from error
    try:
        planned = planner.plan_tables(
            config.tables,
            config.features,
            batch_size=_BATCH_SIZE.value,
            mesh=mesh,
            memory_per_device=memory_per_host // mesh.devices_per_host,
            cost_model=cost_model,
        )
    except planner.PlanError as error:
        sys.exit(f"error: no plan fits: {error}")
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    try:
        reporter = RunReporter.start("plan", config, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    print(f"model:   {config.name}: {config.architecture_summary()}")
    print(f"         {config.table_bytes / 2**30:.2f} GiB of tables in {len(config.tables)} tables")
    print(
        f"mesh:    {mesh.hosts} hosts x {mesh.devices_per_host} devices, "
        f"{memory_per_host / 2**30:.2f} GiB per host, batch {planned.batch_size}; "
        f"{planned.usable_per_device / 2**30:.2f} GiB per device for tables "
        f"({cost_model.reserve_fraction:.0%} reserved)"
    )
    gather, intra, inter = (
        cost_model.gather_bytes_per_s / 1e9,
        cost_model.intra_host_bytes_per_s / 1e9,
        cost_model.inter_host_bytes_per_s / 1e9,
    )
    print(
        f"assumed: random rows at {gather:g} GB/s per device (each read at least "
        f"{cost_model.min_row_read_bytes} B), {intra:g} GB/s within a host, {inter:g} GB/s across "
        "hosts"
    )
    print()
    print(planner.format_plan(planned, config.features))
    print()
    print(
        f"estimated step: {planned.step_s * 1e3:.3f} ms on the busiest device (the embedding "
        "lookups and their exchanges, before the dense part)"
    )
    reporter.write_results({"plan": planner.plan_to_json(planned)})
    print(f"results:     {reporter.results_path}")


if __name__ == "__main__":
    app.run(main)
