"""Query sizes: how many candidate items one request asks to rank.

A query of size S is S candidate items for one user, i.e. S rows of model input. Specs:

    fixed:N               every query has N items
    normal:MU,SIGMA       round(Normal(MU, SIGMA))
    lognormal:MU,SIGMA    round(exp(Normal(MU, SIGMA))); DeepRecSys used MU=5.1, SIGMA=0.2
                          (median exp(5.1) = 164 items)
    quantiles:PATH        a file of K >= 2 non-decreasing numbers (one per line or comma-separated,
                          '#' starts a comment), read as the quantiles at probabilities
                          0, 1/(K-1), ..., 1; sizes are drawn by inverse-CDF sampling with linear
                          interpolation between them, then rounded

Every size is then clamped to [1, max_query_size].
"""

import dataclasses
import os

import numpy as np

KINDS = ("fixed", "normal", "lognormal", "quantiles")
SPEC_HELP = "fixed:N, normal:MU,SIGMA, lognormal:MU,SIGMA or quantiles:PATH"


def _numbers(text: str, spec: str) -> tuple[float, ...]:
    try:
        return tuple(float(value) for value in text.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"Query-size spec {spec!r}: {text!r} is not a list of numbers.") from None


def read_quantiles(path: str) -> tuple[float, ...]:
    """The numbers of a quantile file; raises ValueError naming the file and what is wrong."""
    try:
        with open(path) as file:
            lines = [line.split("#", 1)[0] for line in file]
    except OSError as error:
        raise ValueError(f"Quantile file {path!r} cannot be read: {error.strerror}.") from None
    values = _numbers(" ".join(lines), f"quantiles:{path}")
    if len(values) < 2 or not np.all(np.isfinite(values)) or np.any(np.diff(values) < 0):
        raise ValueError(
            f"Quantile file {path!r} must hold at least 2 finite, non-decreasing numbers; got "
            f"{list(values)[:10]}{' ...' if len(values) > 10 else ''}."
        )
    return values


@dataclasses.dataclass(frozen=True)
class QuerySizeDistribution:
    """A parsed query-size spec. `parameters`: (N,), (MU, SIGMA), or the quantiles."""

    kind: str
    parameters: tuple[float, ...]
    spec: str

    @classmethod
    def parse(cls, spec: str) -> "QuerySizeDistribution":
        """Parses `spec`; raises ValueError naming the spec and the accepted forms."""
        kind, separator, rest = spec.partition(":")
        if not separator or kind not in KINDS or not rest.strip():
            raise ValueError(f"Query-size spec {spec!r} is malformed; expected {SPEC_HELP}.")
        if kind == "quantiles":
            return cls(kind, read_quantiles(os.path.expanduser(rest.strip())), spec)
        parameters = _numbers(rest, spec)
        if kind == "fixed":
            if len(parameters) != 1 or parameters[0] < 1 or parameters[0] != int(parameters[0]):
                raise ValueError(
                    f"Query-size spec {spec!r}: fixed takes one integer N >= 1, as in fixed:64."
                )
        elif len(parameters) != 2 or not parameters[1] >= 0 or not np.isfinite(parameters[0]):
            raise ValueError(
                f"Query-size spec {spec!r}: {kind} takes MU,SIGMA with SIGMA >= 0, as in "
                f"{kind}:5.1,0.2."
            )
        return cls(kind, parameters, spec)

    def sample(self, count: int, max_query_size: int, rng: np.random.Generator) -> np.ndarray:
        """[count] int64 query sizes in [1, max_query_size]."""
        if max_query_size < 1:
            raise ValueError(f"max_query_size must be >= 1; got {max_query_size}.")
        if self.kind == "fixed":
            values = np.full(count, self.parameters[0])
        elif self.kind == "normal":
            values = rng.normal(self.parameters[0], self.parameters[1], size=count)
        elif self.kind == "lognormal":
            values = rng.lognormal(self.parameters[0], self.parameters[1], size=count)
        else:
            probabilities = np.linspace(0.0, 1.0, len(self.parameters))
            values = np.interp(rng.random(count), probabilities, self.parameters)
        return np.clip(np.rint(values), 1, max_query_size).astype(np.int64)

    def median(self) -> float:
        """The median before rounding and clamping (for reports)."""
        if self.kind in ("fixed", "normal"):
            return self.parameters[0]
        if self.kind == "lognormal":
            return float(np.exp(self.parameters[0]))
        return float(np.interp(0.5, np.linspace(0, 1, len(self.parameters)), self.parameters))
