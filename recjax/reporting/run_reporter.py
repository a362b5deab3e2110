"""What every benchmark run reports alike: its folder, the results header, texts and paths.

reporter = RunReporter.start("latency", config, requested_logdir=None, argv=sys.argv)
...                                        # measure
reporter.write_results({"results": [...]})  # results.json: the header, then these
with SummaryWriter(reporter.logdir) as writer:
    reporter.write_texts(writer)           # TensorBoard texts: command, config, fingerprint
reporter.print_paths()
"""

import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Sequence

from recjax.models.family import ModelConfig
from recjax.models.registry import family_of
from recjax.reporting.fingerprint import machine_fingerprint
from recjax.reporting.logdir import RESULTS_FILE, default_logdir, prepare_logdir, write_json
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.memory import peak_resident_bytes


def command_line(benchmark: str, argv: Sequence[str]) -> str:
    """The command as a user would type it: python -m benchmarks.<benchmark> <flags>."""
    return shlex.join(
        [os.path.basename(sys.executable), "-m", f"benchmarks.{benchmark}", *argv[1:]]
    )


@dataclasses.dataclass
class RunReporter:
    """One run's folder and the header every results.json starts with.

    Attributes:
      benchmark: the binary's name, e.g. "latency".
      config: the model's config, or None for a run without a model (benchmarks.machine).
      logdir: the run's own folder (absolute; created).
      command: the command line that started the run.
      fingerprint: the machine fingerprint, taken at the start.
    """

    benchmark: str
    config: ModelConfig | None
    logdir: str
    command: str
    fingerprint: dict[str, object]

    @classmethod
    def start(
        cls,
        benchmark: str,
        config: ModelConfig | None,
        requested_logdir: str | None,
        argv: Sequence[str],
    ) -> "RunReporter":
        """Creates the run folder (raises ValueError if it cannot be written) and the header.

        Call it after the flags are checked and before the expensive work, so a bad folder fails
        early; an explicit folder that already holds a run gets a fresh folder inside it.
        """
        name = config.name if config is not None else "machine"
        logdir = prepare_logdir(requested_logdir or default_logdir(benchmark, name))
        return cls(
            benchmark=benchmark,
            config=config,
            logdir=logdir,
            command=command_line(benchmark, argv),
            fingerprint=machine_fingerprint(),
        )

    @property
    def results_path(self) -> str:
        return os.path.join(self.logdir, RESULTS_FILE)

    def header(self) -> dict[str, object]:
        header: dict[str, object] = {"benchmark": self.benchmark, "command": self.command}
        if self.config is not None:
            header.update(
                model=self.config.name,
                family=family_of(self.config),
                config=dataclasses.asdict(self.config),
                cost=self.config.cost(),
            )
        header["fingerprint"] = self.fingerprint
        return header

    def write_results(self, results: dict[str, object]) -> str:
        """Writes results.json (the header, the peak resident memory so far, then `results`)."""
        write_json(
            self.results_path,
            {**self.header(), "peak_resident_bytes": peak_resident_bytes(), **results},
        )
        return self.results_path

    def write_texts(self, writer: SummaryWriter, texts: dict[str, str] | None = None) -> None:
        """TensorBoard texts: the command, the config, the fingerprint, and `texts`."""
        writer.text("command", f"`{self.command}`")
        if self.config is not None:
            writer.text(
                "config",
                f"`{self.config.architecture_summary()}`\n\n```\n{self.config}\n```",
            )
        writer.text("fingerprint", "```\n" + json.dumps(self.fingerprint, indent=2) + "\n```")
        for tag, markdown in (texts or {}).items():
            writer.text(tag, markdown)

    def print_paths(self) -> None:
        print(f"results:     {self.results_path}")
        print(f"tensorboard: tensorboard --logdir {self.logdir}")
