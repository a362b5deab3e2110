"""benchmarks.latency's --threads and --p99_target_ms, end to end on a tiny preset."""

import json

from tensorboard.backend.event_processing import event_accumulator

from tests.binaries.binary import run_binary


def run_latency(*args):
    return run_binary("latency", *args)


def test_one_thread_and_a_p99_target(tmp_path):
    result = run_latency(
        "--model=rmc1-tiny",
        "--batch_sizes=1,4",
        "--modes=jit",
        "--threads=1",
        "--p99_target_ms=10000",
        "--min_iterations=3",
        "--min_seconds=0",
        "--max_seconds=0.3",
        f"--logdir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["threads"] == 1
    assert results["fingerprint"]["xla_intra_op_threads"] == 1
    assert results["fingerprint"]["thread_environment"]["PJRT_NPROC"] == "1"
    assert len(results["fingerprint"]["cpu_affinity"]) == 1
    # Every batch size meets a 10 s target: the best is the one of highest throughput.
    by_batch = {r["batch_size"]: r for r in results["results"]}
    best = max(by_batch.values(), key=lambda r: r["throughput_samples_per_s"])
    chosen = results["latency_bound"]["best"]["jit"]
    assert chosen["batch_size"] == best["batch_size"]
    assert f"jit    batch {best['batch_size']}:" in result.stdout
    assert "XLA threads: 1" in result.stdout
    accumulator = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert "p99_target/jit/batch_size" in accumulator.Tags()["tensors"]


def test_bad_thread_count_and_target_fail_before_building():
    for flag, message in (
        ("--threads=999", "threads must be between 1 and the"),
        ("--p99_target_ms=-2", "--p99_target_ms must be a positive number"),
    ):
        result = run_latency("--model=rmc1-tiny", flag)
        assert result.returncode != 0
        assert message in result.stderr
        assert "built the model" not in result.stdout
