"""Post-training quantization of any family's model, and the error it makes.

    quantized = quantize_model(model, config)         # model's parameters, in config's dtypes
    report = quantization_error(model, quantized, batch)
    print(format_report(report))

`quantize_model` converts a trained (or freshly initialized, or imported) model to a config of the
same architecture with other dtypes: its tables to `TableConfig.dtype` (float16, bfloat16, int8 or
int4 row-wise; `recjax.layers.quantization`) and its other parameters to the dtype of the new
config's parameter (bfloat16 MLP kernels with `mlp_dtype="bfloat16"`). It works through the
family contract: the new model is built abstractly (`abstract_model`), each non-table parameter is
the source's cast, and each table is read from the source's stacked buffer, one table at a time,
and written into the new group buffer. No second float32 copy of the tables is ever made: the
peak is the source model, the new buffers and one table's float32 values.

The error is measured on a batch, against the source: per table, the max and mean absolute error
of the pooled vectors (sequence rows for sequence features) of the features that read it, and end
to end, the max absolute difference of every head's logits and probabilities.

A model built from a quantized config (`config.build(rngs)`) holds exactly what quantizing the
float32 model built from the same seed gives: each table is initialized in float32 and then
stored (`recjax.layers.embedding_collection.init_stacked_tables`), and MLP kernels likewise.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.inputs.features import Features
from recjax.layers.embedding_collection import empty_stacked_tables
from recjax.layers.quantization import RowFormat
from recjax.models.family import ModelConfig, abstract_model, float32_config

TABLES_PATH = ("sparse_arch", "tables")  # the contract: every family's EmbeddingCollection


@dataclasses.dataclass(frozen=True)
class TableError:
    """The error of one table's lookups: |quantized - float32| over its features' pooled values.

    Attributes:
      table: the table's name.
      dtype: its dtype in the quantized model.
      features: the features that read it.
      max_abs_error: the largest absolute difference of one value of a pooled vector.
      mean_abs_error: the mean absolute difference over all values of its pooled vectors.
      max_abs_value: the largest absolute value of the reference's pooled vectors (for scale).
    """

    table: str
    dtype: str
    features: tuple[str, ...]
    max_abs_error: float
    mean_abs_error: float
    max_abs_value: float


@dataclasses.dataclass(frozen=True)
class QuantizationReport:
    """The error of a quantized model against its reference on one batch.

    Attributes:
      model: the quantized config's name.
      table_dtypes: {table: dtype} of the quantized model.
      mlp_dtype: the quantized config's `mlp_dtype`.
      batch_size: B of the batch measured.
      tables: one `TableError` per table read by a feature.
      max_abs_logit_difference: {head: max |logit - reference logit|}.
      max_abs_probability_difference: {head: max |probability - reference probability|}.
    """

    model: str
    table_dtypes: dict[str, str]
    mlp_dtype: str
    batch_size: int
    tables: tuple[TableError, ...]
    max_abs_logit_difference: dict[str, float]
    max_abs_probability_difference: dict[str, float]

    @property
    def max_abs_output_difference(self) -> float:
        """The largest difference of a probability over all heads (the end-to-end error)."""
        return max(self.max_abs_probability_difference.values())

    def to_json(self) -> dict[str, object]:
        return {
            **dataclasses.asdict(self),
            "max_abs_output_difference": self.max_abs_output_difference,
        }


def check_same_architecture(source: ModelConfig, target: ModelConfig) -> None:
    """Raises ValueError unless `target` is `source` with other dtypes (and lowering, name)."""
    normalized = [
        dataclasses.replace(float32_config(config), name="", embedding_lowering="auto")
        for config in (source, target)
    ]
    if normalized[0] != normalized[1]:
        raise ValueError(
            f"Cannot quantize {source.name} into {target.name}: the configs differ in more than "
            "their dtypes (table_dtype, TableConfig.dtype, mlp_dtype), lowering and name."
        )


@functools.partial(jax.jit, donate_argnums=0, static_argnums=(4, 5, 6))
def _copy_table(
    target: jax.Array,
    source: jax.Array,
    source_row: jax.Array,
    target_row: jax.Array,
    num_rows: int,
    source_format: RowFormat,
    target_format: RowFormat,
) -> tuple[jax.Array, jax.Array]:
    """Writes one table's rows of `source` (decoded to float32) into `target`, stored in
    `target_format`; also returns whether they can be stored."""
    rows = jax.lax.dynamic_slice(source, (source_row, 0), (num_rows, source.shape[1]))
    values = source_format.decode(rows)  # [R, D] float32
    block = target_format.encode(values)
    stored = jax.lax.dynamic_update_slice(target, block, (target_row, 0))
    return stored, target_format.representable(values)


def _quantized_tables(source: nnx.Module, target: nnx.Module) -> dict[str, jax.Array]:
    """{group: stacked buffer} of `target`'s groups, filled table by table from `source`."""
    config = target.config
    source_arch, target_arch = source.sparse_arch, target.sparse_arch
    source_buffers = source_arch.table_buffers()
    buffers = {}
    for group in target_arch.row_formats:
        group_tables = [
            table for table in config.tables if target_arch.table_group[table.name] == group
        ]
        stacked = empty_stacked_tables(group_tables)
        for table in group_tables:
            source_group = source_arch.table_group[table.name]
            stacked, representable = _copy_table(
                stacked,
                source_buffers[source_group],
                jnp.int32(source_arch.table_offset[table.name]),
                jnp.int32(target_arch.table_offset[table.name]),
                table.num_rows,
                source_arch.row_formats[source_group],
                target_arch.row_formats[group],
            )
            if not bool(representable):
                raise ValueError(
                    f"{config.name}: table {table.name!r} cannot be stored as {table.dtype}: it "
                    f"needs {target_arch.row_formats[group].describe_limits()}."
                )
        buffers[group] = stacked
    return buffers


def quantize_model(model: nnx.Module, config: ModelConfig) -> nnx.Module:
    """A model of `config` holding `model`'s parameters converted to `config`'s dtypes.

    `config` must be `model.config` with other dtypes (`table_dtype`, per-table `dtype`,
    `mlp_dtype`); its lowering may differ too. Tables are converted one at a time from the source
    buffers (decoded to float32, then rounded or quantized); other parameters are cast.

    Raises:
      ValueError: the configs differ in architecture, or a table holds values its new dtype cannot
        store (non-finite values, float16 overflow, a row range that overflows float32).
    """
    check_same_architecture(model.config, config)
    target = abstract_model(config)
    tables = _quantized_tables(model, target)
    graphdef, abstract_state = nnx.split(target)
    source_values = {
        path: variable.get_value() for path, variable in nnx.to_flat_state(nnx.state(model))
    }
    converted = []
    for path, variable in nnx.to_flat_state(abstract_state):
        shape = variable.get_value()
        if path[: len(TABLES_PATH)] == TABLES_PATH:
            value = tables[path[len(TABLES_PATH)]]
        else:
            value = source_values[path]
            if value.shape != shape.shape:
                raise ValueError(
                    f"{config.name}: parameter {path} has another shape in the source."
                )
            value = jnp.asarray(value).astype(shape.dtype)
        converted.append((path, variable.replace(value)))
    return nnx.merge(graphdef, nnx.from_flat_state(converted))


@jax.jit
def _forward(model: nnx.Module, batch: Features):
    return model.sparse_arch(batch), model(batch)


def _valid_positions(batch: Features, name: str, values: np.ndarray) -> np.ndarray:
    """A mask of `values` [B, D] or [B, S, D]: every value of a pooled vector, the rows within
    the length of a sequence."""
    if values.ndim == 2:
        return np.ones(values.shape, bool)
    lengths = np.asarray(batch.lengths_of(name))
    valid = np.arange(values.shape[1])[None, :] < lengths[:, None]
    return np.broadcast_to(valid[:, :, None], values.shape)


def quantization_error(
    reference: nnx.Module, quantized: nnx.Module, batch: Features
) -> QuantizationReport:
    """The error of `quantized` against `reference` (usually its float32 source) on `batch`."""
    check_same_architecture(reference.config, quantized.config)
    reference_pooled, reference_logits = _forward(reference, batch)
    pooled, logits = _forward(quantized, batch)
    config = quantized.config
    tables = []
    for table in config.tables:
        features = tuple(f.name for f in config.features if f.table == table.name)
        if not features:
            continue
        errors, magnitudes = [], []
        for name in features:
            expected = np.asarray(reference_pooled[name], np.float64)
            mask = _valid_positions(batch, name, expected)
            errors.append(np.abs(np.asarray(pooled[name], np.float64) - expected)[mask])
            magnitudes.append(np.abs(expected)[mask])
        errors, magnitudes = np.concatenate(errors), np.concatenate(magnitudes)
        tables.append(
            TableError(
                table=table.name,
                dtype=table.dtype,
                features=features,
                max_abs_error=float(errors.max(initial=0.0)),
                mean_abs_error=float(errors.mean()) if errors.size else 0.0,
                max_abs_value=float(magnitudes.max(initial=0.0)),
            )
        )
    logit_difference, probability_difference = {}, {}
    for head in config.heads:
        expected, got = np.asarray(reference_logits[head]), np.asarray(logits[head])
        logit_difference[head] = float(np.max(np.abs(got - expected)))
        probability_difference[head] = float(
            np.max(np.abs(np.asarray(jax.nn.sigmoid(got)) - np.asarray(jax.nn.sigmoid(expected))))
        )
    return QuantizationReport(
        model=config.name,
        table_dtypes={table.name: table.dtype for table in config.tables},
        mlp_dtype=config.mlp_dtype,
        batch_size=batch.batch_size,
        tables=tuple(tables),
        max_abs_logit_difference=logit_difference,
        max_abs_probability_difference=probability_difference,
    )


def format_report(report: QuantizationReport) -> str:
    """The report as a fixed-width table: one row per table, then the end-to-end differences."""
    header = (
        f"{'table':<24}{'dtype':>10}{'max abs err':>14}{'mean abs err':>14}{'max |pooled|':>14}"
    )
    lines = [
        f"{report.model}: quantization error on a batch of {report.batch_size} "
        f"(mlp_dtype {report.mlp_dtype})",
        header,
        "-" * len(header),
    ]
    for error in report.tables:
        lines.append(
            f"{error.table:<24}{error.dtype:>10}{error.max_abs_error:>14.3e}"
            f"{error.mean_abs_error:>14.3e}{error.max_abs_value:>14.3e}"
        )
    for head in report.max_abs_logit_difference:
        lines.append(
            f"{head}: max |logit difference| {report.max_abs_logit_difference[head]:.3e}, "
            f"max |probability difference| {report.max_abs_probability_difference[head]:.3e}"
        )
    return "\n".join(lines)
