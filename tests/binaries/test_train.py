"""The training binary end to end on a tiny preset: planted data, metrics, checkpoints, resume,
Ctrl-C, and trained weights in benchmarks.latency."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tensorboard.backend.event_processing import event_accumulator

from tests.binaries.binary import REPO, run_binary

SMALL = [
    "--model=rmc1-tiny",
    "--batch_size=32",
    "--log_every=10",
    "--eval_every=10",
    "--checkpoint_every=10",
    "--planted_examples=2000",
    "--planted_eval_examples=500",
]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("train")
    frameworks = "recjax,torch" if _has_torch() else "recjax"
    result = run_binary(
        "train",
        *SMALL,
        "--steps=20",
        f"--frameworks={frameworks}",
        "--optimizer=sgd",
        "--learning_rate=0.1",
        "--embedding_optimizer=sgd",
        f"--logdir={logdir}",
    )
    assert result.returncode == 0, result.stderr
    return logdir, result.stdout


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_prints_progress_metrics_and_writes_results(first_run):
    logdir, stdout = first_run
    assert "the planted model's own held-out AUC" in stdout
    assert "step      20/20  loss" in stdout and "samples/s" in stdout and "ETA" in stdout
    assert "eval     step 20: click AUC" in stdout
    results = json.loads((logdir / "results.json").read_text())
    assert results["benchmark"] == "train" and results["model"] == "rmc1-tiny"
    recjax = results["recjax"]
    assert recjax["final_step"] == 20 and len(recjax["step_losses"]) == 20
    assert recjax["checkpoints"] == [10, 20]
    assert [e["step"] for e in recjax["evaluations"]] == [10, 20]
    click = recjax["evaluations"][-1]["heads"]["click"]
    assert 0.5 < click["auc"] <= 1 and click["examples"] == 500
    assert 0 < results["data"]["planted"]["auc"] < 1
    assert recjax["samples_per_second"] > 0 and 0 <= recjax["waited_fraction"] <= 1
    assert results["memory"]["recjax_peak_resident_bytes"] > results["memory"]["table_bytes"]
    if "torch" in results:
        agreement = results["loss_agreement"]
        assert agreement["steps"] == 20 and agreement["max_relative_difference"] < 1e-4
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags()["tensors"])
    assert {"train/loss", "eval/click/auc", "eval/click/logloss", "eval/click/accuracy"} <= tags
    assert {"eval/click/planted_auc", "data/waited_fraction", "train/samples_per_second"} <= tags


def test_resumes_from_its_checkpoint_and_refuses_other_data_or_presets(first_run, tmp_path):
    logdir, _ = first_run
    checkpoint_dir = logdir / "checkpoints"
    same = [
        *SMALL,
        "--optimizer=sgd",
        "--learning_rate=0.1",
        "--embedding_optimizer=sgd",
        f"--checkpoint_dir={checkpoint_dir}",
    ]
    # The planted files are generated again in the new logdir: the same data.
    resumed = run_binary("train", *same, "--steps=30", f"--logdir={tmp_path / 'resumed'}")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from checkpoint" in resumed.stdout and "(step 20)" in resumed.stdout
    results = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert results["recjax"]["start_step"] == 20 and results["recjax"]["final_step"] == 30
    other_data = run_binary(
        "train", *same, "--steps=40", "--planted_vocabulary=50", f"--logdir={tmp_path / 'o'}"
    )
    assert other_data.returncode != 0
    assert "other data" in other_data.stderr and "files: checkpoint" in other_data.stderr
    wrong = run_binary(
        "train",
        *[flag for flag in same if not flag.startswith("--model")],
        "--model=rmc3-tiny",
        f"--logdir={tmp_path / 'wrong'}",
    )
    assert wrong.returncode != 0
    assert "holds rmc1-tiny, which does not fit rmc3-tiny" in wrong.stderr


def test_latency_measures_trained_weights_from_the_checkpoint(first_run, tmp_path):
    logdir, _ = first_run
    fast = ["--min_iterations=2", "--min_seconds=0", "--max_seconds=0.2", "--warmup=1"]
    result = run_binary(
        "latency",
        "--model=rmc1-tiny",
        "--batch_sizes=2",
        "--modes=jit",
        f"--checkpoint={logdir / 'checkpoints'}",
        f"--logdir={tmp_path / 'latency'}",
        *fast,
    )
    assert result.returncode == 0, result.stderr
    assert "restored the model trained to step" in result.stdout
    results = json.loads((tmp_path / "latency" / "results.json").read_text())
    assert results["checkpoint"] == str(logdir / "checkpoints")
    refused = run_binary("loadgen", "--model=rmc2-tiny", f"--checkpoint={logdir / 'checkpoints'}")
    assert refused.returncode != 0 and "does not fit rmc2-tiny" in refused.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--frameworks=torch"], "--frameworks must include recjax"),
        (["--criteo_mapping=strict"], "rmc1-tiny takes 128 dense inputs and 8 sparse features"),
        (["--data=/nonexistent/*.tsv"], "no file matches '/nonexistent/\\*.tsv'"),
        (["--override=table_dtype=int8"], "not rmc1_table_0 (int8), rmc1_table_1 (int8)"),
    ],
)
def test_bad_flags_are_refused(flags, message, tmp_path):
    result = run_binary("train", "--model=rmc1-tiny", *flags, f"--logdir={tmp_path}")
    assert result.returncode != 0
    assert message.replace("\\", "") in result.stderr


def test_ctrl_c_leaves_the_last_checkpoint_and_the_same_command_resumes(tmp_path):
    checkpoint_dir = tmp_path / "checkpoints"
    command = [
        sys.executable,
        "-m",
        "benchmarks.train",
        "--model=rmc1-tiny",
        "--data=synthetic",
        "--batch_size=16",
        "--steps=100000",
        "--log_every=1000",
        "--checkpoint_every=5",
        f"--checkpoint_dir={checkpoint_dir}",
        f"--logdir={tmp_path / 'run'}",
    ]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (checkpoint_dir / "10").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted after step" in stdout and "run the same command to resume" in stdout
    steps = sorted(int(name) for name in os.listdir(checkpoint_dir) if name.isdigit())
    assert steps and steps[-1] >= 10
    resumed = run_binary(
        "train",
        *command[3:-2],
        "--steps=" + str(steps[-1] + 2),
        command[-2],
        f"--logdir={tmp_path / 'again'}",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"(step {steps[-1]})" in resumed.stdout
