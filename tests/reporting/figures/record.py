"""Records the small results.json files the figure tests draw, from tiny smoke runs.

    python -m tests.reporting.figures.record /tmp/fig/lat-rmc1-tiny /tmp/fig/bd-rmc2-tiny ...

Each run's results.json is copied into data/<benchmark>-<model>.json, trimmed: without the
config, the per-call latencies, the per-stage statistics and all of the machine fingerprint but
its CPU, cores and jax version (the figures read none of them). Each file keeps the command that
produced it (its "command" field): tiny presets, timing budgets of a fraction of a second. The
numbers are smoke-run numbers, not measurements.
"""

import json
import os
import sys

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DROPPED = ("config", "latencies_ms", "stats", "fingerprint")
KEPT_FINGERPRINT = ("cpu_model", "usable_cpus", "jax")


def trim(value: object) -> object:
    """`value` without the DROPPED keys, at any depth."""
    if isinstance(value, dict):
        return {key: trim(item) for key, item in value.items() if key not in DROPPED}
    if isinstance(value, list):
        return [trim(item) for item in value]
    return value


def record(run_folder: str) -> str:
    with open(os.path.join(run_folder, "results.json")) as file:
        results = json.load(file)
    trimmed = trim(results)
    trimmed["fingerprint"] = {key: results["fingerprint"][key] for key in KEPT_FINGERPRINT}
    path = os.path.join(DATA, f"{results['benchmark']}-{results['model']}.json")
    with open(path, "w") as file:
        json.dump(trimmed, file, indent=1)
        file.write("\n")
    return path


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print(record(folder))
