r"""Post-training quantization of a preset and its error against float32, per table and end to end.

    python -m benchmarks.quantize --model=rmc2 --override=table_dtype=int8
    python -m benchmarks.quantize --model=rmc1 --override=table_dtype=int4 --batch_size=4096
    python -m benchmarks.quantize --model=rmc3 --override=mlp_dtype=bfloat16
    python -m benchmarks.quantize --model=rmc2-tiny --override=table_dtype=float16

The flags shared by every binary (--model, --seed, --embedding_lowering, --huge_pages, --logdir,
--override, --ids) are defined in benchmarks/flags.py; --override=table_dtype=... and
--override=mlp_dtype=... choose the dtypes to quantize to, --ids how the batch draws its ids.

Builds the preset in float32 from --seed, quantizes it table by table into the dtypes of the
overridden config (`recjax.runtime.quantize.quantize_model`: no second float32 copy of the tables),
and measures both on one synthetic batch: per table, the max and mean absolute error of the pooled
vectors; end to end, the max absolute difference of the logits and probabilities. Prints a table
and writes results.json and TensorBoard event files (the table as text; scalars
table/max_abs_error and table/mean_abs_error with the table's index as the step) into --logdir.
Times nothing.
"""

import sys

from absl import app, flags

from benchmarks import flags as shared
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.layers.embedding_bag import resolve_lowering
from recjax.models.family import float32_config
from recjax.reporting.fingerprint import fingerprint_summary
from recjax.reporting.run_reporter import RunReporter
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.memory import GIB, peak_resident_bytes
from recjax.runtime.model_setup import build_model
from recjax.runtime.quantize import format_report, quantization_error, quantize_model

_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 1024, "Samples of the synthetic batch the error is measured on.", lower_bound=1
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    shared.start_on_cpu()
    config = shared.model_config()
    ids = shared.id_distributions(config)
    reference_config = float32_config(config)
    try:
        lowering, lowering_note = resolve_lowering(config.embedding_lowering)
    except (ValueError, RuntimeError) as error:
        raise app.UsageError(str(error)) from error
    # The float32 model and the quantized one side by side (counted as a second float32 copy).
    needed = shared.check_memory_or_exit(
        reference_config, _BATCH_SIZE.value, extra_parameter_copies=1
    )
    try:
        reporter = RunReporter.start("quantize", config, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error

    print(f"machine: {fingerprint_summary(reporter.fingerprint)}")
    shared.print_model_header(config, needed, lowering, lowering_note)
    print(
        f"         float32: {reference_config.parameter_bytes / GIB:.3f} GiB of parameters; "
        f"quantized: {config.parameter_bytes / GIB:.3f} GiB "
        f"({config.parameter_bytes / reference_config.parameter_bytes:.1%})"
    )
    print(f"logdir:  {reporter.logdir}")
    reference, _ = build_model(reference_config, shared.SEED.value, huge_pages=False)
    quantized = quantize_model(reference, config)
    batch = synthetic_features(config, _BATCH_SIZE.value, seed=shared.SEED.value + 1, ids=ids)
    batch = to_device(batch)
    report = quantization_error(reference, quantized, batch)
    table = format_report(report)
    reporter.write_results(
        {
            "embedding_lowering": lowering,
            "ids": shared.IDS.value,
            "float32_parameter_bytes": reference_config.parameter_bytes,
            "quantized_parameter_bytes": config.parameter_bytes,
            "quantization_error": report.to_json(),
        }
    )
    with SummaryWriter(reporter.logdir) as writer:
        for index, error in enumerate(report.tables):
            writer.scalar("table/max_abs_error", error.max_abs_error, index)
            writer.scalar("table/mean_abs_error", error.mean_abs_error, index)
        writer.scalar(
            "end_to_end/max_abs_probability_difference", report.max_abs_output_difference, 0
        )
        reporter.write_texts(writer, {"results": f"`{reporter.command}`\n\n```\n{table}\n```"})
    print()
    print(table)
    print()
    print(f"end to end: max |probability difference| {report.max_abs_output_difference:.3e}")
    print(f"peak resident memory: {peak_resident_bytes() / GIB:.2f} GiB")
    reporter.print_paths()


if __name__ == "__main__":
    app.run(main)
