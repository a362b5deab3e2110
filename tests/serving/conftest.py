import time

import pytest


class FixedServiceTime:
    """A stand-in model whose every call takes `seconds`, whatever the batch size.

    It sleeps, so like a compiled XLA program it leaves the GIL to the dispatcher. time.sleep
    overshoots by tens of microseconds, so tests use the measured service times where it matters.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls: list[int] = []

    def __call__(self, padded_size: int) -> None:
        self.calls.append(padded_size)
        time.sleep(self.seconds)


@pytest.fixture
def fixed_service_time():
    return FixedServiceTime
