"""Multi-task Wide & Deep, as YouTube's ranking model uses it (Zhao et al., "Recommending What
Video to Watch Next: A Multitask Ranking System", RecSys 2019), with an MMoE option (Ma et al.,
"Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018).

    x = [dense, embeddings] [B, F + sum_k D_k]
      ├─► shared bottom (MLP, ReLU) ─► [B, H] ──────────┬─► tower "task_0" ─► [B] ─┐ + wide
      │   or MMoE: E experts [B, E, H], one softmax     ├─► tower "task_1" ─► [B] ─┤   logit
      │   gate per task [B, T, E], mixed ─► [B, T, H] ──┴─► ...                    │   [B]
      └─► wide arch (one weight per id, dim-1 tables) ─► [B] ──────────────────────┘

Zhao et al., Section 4 and Figure 1: a Wide & Deep model whose deep part is shared by several
tasks (engagement and satisfaction objectives), each with its own tower and its own logit, and
whose wide part is a shallow tower whose logit is added to the main model's logit. Section 4.2
replaces the shared bottom by MMoE: E experts over the shared input, and for each task k a gate
g^k(x) = softmax(W_gk x) (Ma et al., eq. 6, no bias) mixing the experts, f^k(x) = sum_i g^k(x)_i
f_i(x) (eq. 5), into the task's tower h^k (eq. 4). With `experts=0` the shared bottom is one MLP
(Ma et al.'s "shared-bottom" model, eq. 1); with `experts=E` each expert is an MLP of the shared
bottom's widths.

What recjax does, and why:
- Inputs: the same dense features and sparse features as Wide & Deep, for every task (the issue's
  "shared bottom over the same inputs"). YouTube's shallow tower reads selection-bias features
  (position, device), which a synthetic benchmark does not have; recjax keeps its structure (one
  logit added to every task's logit) and feeds it what Wide & Deep's wide part reads: one weight per
  id of every sparse feature (`wide_tables`, dim-1 tables, `recjax.layers.wide`). With
  `wide_tables=()` there is no wide part, as in DeepRecSys's "mtwnd".
- Each head ends in a logit of its own (a sigmoid per task at inference). DeepRecSys's mtwnd (Gupta
  et al., ISCA 2020) stops its task towers at 128-wide ReLU vectors without a logit and has no wide
  part; its sizes (shared 1888-1024-512, heads 512-256-128) are recjax's, plus the logit layer.

Shapes: `B` batch, `F` dense features, `D_k` embedding dim of feature k, `H` the shared bottom's
(or each expert's) output width, `E` experts, `T` tasks (heads).
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from recjax.inputs.features import Features
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.mlp import MLP, mlp_flops
from recjax.layers.wide import WideArch
from recjax.models.family import ModelConfig, Stage
from recjax.models.wide_deep import (
    check_layer_sizes,
    check_wide_and_deep_inputs,
    deep_input_width,
    ids_per_feature,
    tables_summary,
    wide_bytes_per_sample,
    wide_lookups_per_sample,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiTaskWideDeepConfig(ModelConfig):
    """The architecture of one multi-task Wide & Deep model (see `ModelConfig` for the shared
    fields; `heads` names the tasks, e.g. ("task_0", "task_1", "task_2", "task_3")).

    Attributes:
      shared_mlp: output widths of the shared bottom's layers (ReLU after each, the last too); its
        input width is F + sum_k D_k (`deep_in_features`). With experts, each expert's widths.
      task_mlp: output widths of each task's tower (ReLU between layers); the last is 1 (the task's
        logit). Its input width is shared_mlp[-1].
      wide_tables: the wide (dim-1) table of each sparse feature, in feature order, or () for no
        wide part. The wide logit is added to every task's logit.
      experts: 0 for a shared bottom; E > 0 for MMoE with E experts and one gate per task.
    """

    shared_mlp: tuple[int, ...]
    task_mlp: tuple[int, ...]
    wide_tables: tuple[str, ...]
    experts: int = 0

    def __post_init__(self):
        super().__post_init__()
        bad = [head for head in self.heads if not head.isidentifier()]
        if not self.heads or bad or len(set(self.heads)) != len(self.heads):
            raise ValueError(
                f"{self.name}: heads must be one or more distinct task names that are Python "
                f"identifiers (e.g. 'task_0'); got heads={self.heads}."
            )
        check_layer_sizes(self.name, "shared_mlp", self.shared_mlp, ends_in_logit=False)
        check_layer_sizes(self.name, "task_mlp", self.task_mlp, ends_in_logit=True)
        if self.experts < 0:
            raise ValueError(
                f"{self.name}: experts must be 0 (a shared bottom) or a positive number of MMoE "
                f"experts; got experts={self.experts}."
            )
        check_wide_and_deep_inputs(self, self.wide_tables)

    @property
    def deep_in_features(self) -> int:
        return deep_input_width(self)

    @property
    def embedding_bytes_per_sample(self) -> int:
        """Embedding rows and wide weights gathered per sample at full capacity."""
        return super().embedding_bytes_per_sample + wide_bytes_per_sample(self, self.wide_tables)

    @property
    def lookups_per_sample(self) -> int:
        """Rows gathered per sample: every id in its embedding table, and in its wide table."""
        return super().lookups_per_sample + wide_lookups_per_sample(self, self.wide_tables)

    def build(self, rngs: nnx.Rngs) -> "MultiTaskWideDeep":
        return MultiTaskWideDeep(self, rngs=rngs)

    def dense_flops_per_sample(self) -> int:
        """The shared bottom (or the experts, the gates' linear layers and the mixture) and every
        task's tower; a multiply-add counts as two. Softmax, the wide part (embedding-bag pooling)
        and the additions of the wide logit are not counted."""
        tasks, width = len(self.heads), self.shared_mlp[-1]
        towers = tasks * mlp_flops(width, self.task_mlp)
        bottom = mlp_flops(self.deep_in_features, self.shared_mlp)
        if not self.experts:
            return bottom + towers
        gates = tasks * 2 * self.deep_in_features * self.experts
        mixture = tasks * 2 * self.experts * width
        return self.experts * bottom + gates + mixture + towers

    def stages(self) -> tuple[Stage, ...]:
        stages = [
            Stage("embedding", ("batch",), lambda model, batch: model.embed(batch), "embedding")
        ]
        if self.wide_tables:
            stages.append(
                Stage("wide", ("batch",), lambda model, batch: model.wide(batch), "embedding")
            )
        if not self.experts:
            stages.append(
                Stage(
                    "shared_bottom",
                    ("batch", "embedding"),
                    lambda model, batch, embedded: model.shared_bottom(
                        model.deep_input(batch, embedded)
                    ),
                    "fc",
                )
            )
            tower_inputs = "shared_bottom"
        else:
            stages += [
                Stage(
                    "experts",
                    ("batch", "embedding"),
                    lambda model, batch, embedded: model.run_experts(
                        model.deep_input(batch, embedded)
                    ),
                    "fc",
                ),
                Stage(
                    "gates",
                    ("batch", "embedding"),
                    lambda model, batch, embedded: model.run_gates(
                        model.deep_input(batch, embedded)
                    ),
                    "fc",
                ),
                Stage(
                    "mixture",
                    ("experts", "gates"),
                    lambda model, experts, gates: model.mix(experts, gates),
                    "interaction",
                ),
            ]
            tower_inputs = "mixture"
        if self.wide_tables:
            stages.append(
                Stage(
                    "task_towers",
                    (tower_inputs, "wide"),
                    lambda model, inputs, wide: model.task_logits(inputs, wide),
                    "fc",
                )
            )
        else:
            stages.append(
                Stage(
                    "task_towers",
                    (tower_inputs,),
                    lambda model, inputs: model.task_logits(inputs, None),
                    "fc",
                )
            )
        return tuple(stages)

    def architecture_summary(self) -> str:
        """One line, e.g. 'shared 1888-1024-512, 4 towers 512-256-128-1, wide over 43 features,
        41 x 500,000 + 2 x 5,000,000 rows x 32 dim, 1 id/feature, 512 dense'."""
        shared = "-".join(str(width) for width in (self.deep_in_features, *self.shared_mlp))
        bottom = f"{self.experts} experts {shared} (MMoE)" if self.experts else f"shared {shared}"
        tower = "-".join(str(width) for width in (self.shared_mlp[-1], *self.task_mlp))
        wide = f"wide over {len(self.features)} features" if self.wide_tables else "no wide part"
        ids = ids_per_feature(self)
        return (
            f"{bottom}, {len(self.heads)} towers {tower}, {wide}, "
            f"{tables_summary(self, self.wide_tables)}, {ids}, "
            f"{self.dense_features} dense"
        )


class MultiTaskWideDeep(nnx.Module):
    """The multi-task Wide & Deep network: sparse arch, wide arch, shared bottom (or MMoE experts
    and gates), one tower per task.

    Input  a `Features` batch: dense [B, F] float32 and the config's sparse features.
    Output {task: logits [B]} for every head of the config.

    Example:
        >>> model = configs.get("mtwnd-tiny").build(nnx.Rngs(0))
        >>> {task: logits.shape for task, logits in model(batch_of_4).items()}
        {'task_0': (4,), 'task_1': (4,), 'task_2': (4,), 'task_3': (4,)}
    """

    def __init__(self, config: MultiTaskWideDeepConfig, *, rngs: nnx.Rngs):
        self.config = config
        width_in = config.deep_in_features
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )
        names = [feature.name for feature in config.features]
        self.wide_arch = (
            WideArch(self.sparse_arch, dict(zip(names, config.wide_tables, strict=True)))
            if config.wide_tables
            else None
        )
        if config.experts:
            self.experts = nnx.List(
                [
                    MLP(width_in, config.shared_mlp, relu_last=True, rngs=rngs)
                    for _ in range(config.experts)
                ]
            )
            self.gates = nnx.Dict(
                {
                    task: nnx.Linear(
                        width_in,
                        config.experts,
                        use_bias=False,
                        kernel_init=nnx.initializers.glorot_normal(),
                        rngs=rngs,
                    )
                    for task in config.heads
                }
            )
        else:
            self.shared_bottom = MLP(width_in, config.shared_mlp, relu_last=True, rngs=rngs)
        self.towers = nnx.Dict(
            {
                task: MLP(config.shared_mlp[-1], config.task_mlp, relu_last=False, rngs=rngs)
                for task in config.heads
            }
        )

    def embed(self, batch: Features) -> jax.Array:
        """[B, sum_k D_k]: the features' pooled embeddings, concatenated in feature order."""
        pooled = self.sparse_arch(batch)
        return jnp.concatenate([pooled[feature.name] for feature in self.config.features], axis=1)

    def wide(self, batch: Features) -> jax.Array:
        """[B] the wide logit, added to every task's logit."""
        return self.wide_arch(self.sparse_arch, batch)[:, 0]

    def deep_input(self, batch: Features, embedded: jax.Array) -> jax.Array:
        """x = [dense, embeddings]: [B, F + sum_k D_k]."""
        return jnp.concatenate([batch.dense, embedded], axis=1)

    def run_experts(self, x: jax.Array) -> jax.Array:
        """[B, E, H]: f_i(x) of every expert (Ma et al., eq. 5)."""
        return jnp.stack([expert(x) for expert in self.experts], axis=1)

    def run_gates(self, x: jax.Array) -> jax.Array:
        """[B, T, E]: g^k(x) = softmax(W_gk x) of every task, in head order (Ma et al., eq. 6)."""
        return jnp.stack(
            [jax.nn.softmax(self.gates[task](x), axis=-1) for task in self.config.heads], axis=1
        )

    def mix(self, experts: jax.Array, gates: jax.Array) -> jax.Array:
        """[B, T, H]: f^k(x) = sum_i g^k(x)_i f_i(x) for every task k (Ma et al., eq. 5)."""
        return jnp.einsum("bte,beh->bth", gates, experts)

    def task_logits(self, inputs: jax.Array, wide: jax.Array | None) -> dict[str, jax.Array]:
        """{task: [B] logits}: each task's tower h^k over its input ([B, H] from the shared
        bottom, or [B, T, H] mixed per task), plus the wide logit."""
        logits = {}
        for index, task in enumerate(self.config.heads):
            tower_input = inputs[:, index] if inputs.ndim == 3 else inputs
            logits[task] = self.towers[task](tower_input)[:, 0]
            if wide is not None:
                logits[task] = logits[task] + wide
        return logits

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        x = self.deep_input(batch, self.embed(batch))
        if self.config.experts:
            tower_inputs = self.mix(self.run_experts(x), self.run_gates(x))
        else:
            tower_inputs = self.shared_bottom(x)
        wide = self.wide(batch) if self.wide_arch is not None else None
        return self.task_logits(tower_inputs, wide)
