"""Latency-bounded throughput from a batch sweep: the paper's metric, closed loop.

Given a p99 latency target, the best configuration of a mode is the batch size with the highest
throughput (samples per second) among those whose p99 per-call latency is at most the target.
"""

from collections.abc import Sequence

from recjax.bench.latency_sweep import Measurement
from recjax.reporting.summary_writer import SummaryWriter


def best_under_p99(
    measurements: Sequence[Measurement], p99_target_ms: float
) -> dict[str, Measurement | None]:
    """Per mode, the measurement of highest throughput whose p99 is <= the target, or None.

    Ties in throughput go to the smaller batch size (the lower latency). Modes keep the order in
    which they first appear in `measurements`.
    """
    if not p99_target_ms > 0:
        raise ValueError(f"The p99 target must be a positive number of ms; got {p99_target_ms}.")
    best: dict[str, Measurement | None] = {}
    for m in measurements:
        best.setdefault(m.mode, None)
        if m.stats.p99_ms > p99_target_ms:
            continue
        current = best[m.mode]
        key = (m.throughput_samples_per_s, -m.batch_size)
        if current is None or key > (current.throughput_samples_per_s, -current.batch_size):
            best[m.mode] = m
    return best


def format_best(best: dict[str, Measurement | None], p99_target_ms: float) -> str:
    """One line per mode: the best batch size and its throughput, or that none met the target."""
    lines = [f"latency-bounded throughput, p99 <= {p99_target_ms:g} ms:"]
    for mode, m in best.items():
        if m is None:
            lines.append(f"  {mode:<6} no batch size meets the target")
        else:
            lines.append(
                f"  {mode:<6} batch {m.batch_size}: {m.throughput_samples_per_s:,.0f} samples/s "
                f"(p99 {m.stats.p99_ms:.3f} ms)"
            )
    return "\n".join(lines)


def to_json(best: dict[str, Measurement | None], p99_target_ms: float) -> dict[str, object]:
    return {
        "p99_target_ms": p99_target_ms,
        "best": {
            mode: None
            if m is None
            else {
                "batch_size": m.batch_size,
                "throughput_samples_per_s": m.throughput_samples_per_s,
                "p99_ms": m.stats.p99_ms,
            }
            for mode, m in best.items()
        },
    }


def write_summaries(
    writer: SummaryWriter, best: dict[str, Measurement | None], p99_target_ms: float
) -> None:
    """Scalars p99_target/<mode>/{batch_size,throughput_samples_per_s} (0 where none met it)."""
    step = round(p99_target_ms * 1000)  # the target in microseconds, so several targets can share
    for mode, m in best.items():
        writer.scalar(f"p99_target/{mode}/batch_size", m.batch_size if m else 0, step)
        throughput = m.throughput_samples_per_s if m else 0.0
        writer.scalar(f"p99_target/{mode}/throughput_samples_per_s", throughput, step)
    writer.text("p99_target", "```\n" + format_best(best, p99_target_ms) + "\n```")
    writer.flush()
