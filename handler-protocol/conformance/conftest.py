"""pytest wiring of the conformance suite: every scenario runs once per selected SDK."""

from __future__ import annotations

import os
import sys
from typing import Callable, List

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from suite import REGISTRATIONS, FakeSkiff, HandlerProcess, build, selected  # noqa: E402


def pytest_generate_tests(metafunc):
    if "sdk" in metafunc.fixturenames:
        ids = selected()
        level = getattr(metafunc.function, "conformance_level", 1)
        params = []
        for i in ids:
            marks = []
            if REGISTRATIONS[i]["level"] < level:
                marks.append(pytest.mark.skip(
                    reason=f"{i} implements contract level {REGISTRATIONS[i]['level']}"))
            params.append(pytest.param(i, marks=marks, id=i))
        metafunc.parametrize("sdk", params)


@pytest.fixture
def spawn(sdk) -> Callable[..., HandlerProcess]:
    build(sdk)
    procs: List[HandlerProcess] = []

    def start(socket_path: str, capacity: int = 2, mode: str = "all",
              **extra_env: str) -> HandlerProcess:
        p = HandlerProcess(REGISTRATIONS[sdk], socket_path, capacity, mode, extra_env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()


@pytest.fixture
def skiff():
    with FakeSkiff() as s:
        yield s


@pytest.fixture
def reg(sdk):
    """The SDK's registration (sdks/<id>.json)."""
    return REGISTRATIONS[sdk]
