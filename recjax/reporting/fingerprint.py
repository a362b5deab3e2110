"""The machine fingerprint printed and stored beside every result.

Latency depends on the CPU, its caches and vector units, memory, the library versions and the
thread settings; a number without them cannot be compared with another.
"""

import glob
import importlib.metadata
import os
import platform
import socket

import jax

from recjax.runtime.memory import GIB
from recjax.runtime.threads import xla_intra_op_threads

# Environment variables that change how many threads XLA, Eigen, OpenMP or BLAS use.
THREAD_ENVIRONMENT = (
    "XLA_FLAGS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "JAX_PLATFORMS",
    "JAX_NUM_CPU_DEVICES",
    "PJRT_NPROC",
    "NPROC",
)

# The instruction-set extensions that matter for gathers and matrix multiplies.
INTERESTING_ISA_PREFIXES = ("sse4", "avx", "fma", "amx", "f16c", "bmi2", "vnni")


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return ""


def _cpuinfo_field(name: str) -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def _caches() -> dict[str, str]:
    """Cache sizes of CPU 0, e.g. {'L1d': '32K', 'L2': '1024K', 'L3': '32768K'}."""
    caches = {}
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        level, kind = _read(f"{index}/level"), _read(f"{index}/type")
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        caches[f"L{level}{suffix}"] = _read(f"{index}/size")
    return caches


def last_level_cache(fingerprint: dict[str, object]) -> tuple[str, int]:
    """(name, bytes) of the highest cache level in the fingerprint, e.g. ("L3", 33554432).

    Raises ValueError when the fingerprint names no cache size (sysfs unreadable).
    """
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    sizes = {}
    for name, size in fingerprint.get("caches", {}).items():
        text = str(size).strip().upper().removesuffix("B")
        if text[:-1].isdigit() and text[-1] in units:
            sizes[name] = int(text[:-1]) * units[text[-1]]
        elif text.isdigit():
            sizes[name] = int(text)
    if not sizes:
        raise ValueError(f"The fingerprint names no cache sizes: {fingerprint.get('caches')}.")
    name = max(sizes, key=lambda cache: (int(cache[1:2] or 0), sizes[cache]))
    return name, sizes[name]


def _memory_total_bytes() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_fingerprint() -> dict[str, object]:
    """What the machine and software are, as a flat JSON-friendly dict."""
    flags = _cpuinfo_field("flags").split()
    isa = sorted(flag for flag in flags if flag.startswith(INTERESTING_ISA_PREFIXES))
    return {
        "hostname": socket.gethostname(),
        "cpu_model": _cpuinfo_field("model name") or platform.processor() or "unknown",
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "caches": _caches(),
        "isa_flags": isa,
        "memory_total_gib": round(_memory_total_bytes() / GIB, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "flax": _version("flax"),
        "numpy": _version("numpy"),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(device) for device in jax.devices()],
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "xla_intra_op_threads": xla_intra_op_threads(),  # counted after jax.devices() started it
        "thread_environment": {name: os.environ.get(name, "") for name in THREAD_ENVIRONMENT},
    }


def fingerprint_summary(fingerprint: dict[str, object]) -> str:
    """One line for console output."""
    caches = " ".join(f"{name} {size}" for name, size in fingerprint["caches"].items())
    vector = (
        "AVX-512"
        if "avx512f" in fingerprint["isa_flags"]
        else ("AVX2" if "avx2" in fingerprint["isa_flags"] else "no AVX2")
    )
    xla_flags = fingerprint["thread_environment"].get("XLA_FLAGS") or "none"
    return (
        f"{fingerprint['cpu_model']}, {fingerprint['usable_cpus']} usable cores, {caches}, "
        f"{vector}, {fingerprint['memory_total_gib']} GiB; jax {fingerprint['jax']}, "
        f"jaxlib {fingerprint['jaxlib']}, flax {fingerprint['flax']}; XLA_FLAGS: {xla_flags}; "
        f"XLA threads: {fingerprint.get('xla_intra_op_threads', '?')}"
    )
