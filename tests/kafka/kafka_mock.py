"""Drives skiff-kafka-mock (devstack/kafka-mock/kafka_mock.c): librdkafka's mock Kafka cluster,
with faults injected by line commands on its stdin.

    with MockCluster(brokers=3) as mock:
        mock.create_topic("orders", partitions=1)
        mock.push_errors("Produce", "NOT_LEADER_FOR_PARTITION")
        producer = Producer({"bootstrap.servers": mock.bootstrap})

The binary is $SKIFF_KAFKA_MOCK_BIN, else <repo>/build/skiff-kafka-mock. Stdlib only."""
from __future__ import annotations

import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import IO, Optional, Union

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = ROOT / "build" / "skiff-kafka-mock"


class MockError(RuntimeError):
    """The mock answered "error <message>", or did not answer."""


def mock_binary() -> Path:
    return Path(os.environ.get("SKIFF_KAFKA_MOCK_BIN", DEFAULT_BIN))


class MockCluster:
    """A running skiff-kafka-mock. Broker ids are 1..brokers; "all" (or -1) means every
    broker. Each command waits for its answer (timeout seconds) and raises MockError on an
    error answer. stderr (librdkafka's log) goes to the given file, by default ours."""

    def __init__(self, brokers: int = 3, binary: Optional[Path] = None,
                 timeout: float = 10.0, stderr: Optional[IO] = None) -> None:
        self.binary = Path(binary) if binary else mock_binary()
        if not os.access(self.binary, os.X_OK):
            raise FileNotFoundError(
                f"skiff-kafka-mock not found at {self.binary}: build it "
                "(cmake --build build --target skiff-kafka-mock) or set SKIFF_KAFKA_MOCK_BIN")
        self.brokers = brokers
        self.timeout = timeout
        self._lines: queue.Queue = queue.Queue()
        self._closed = False
        self._proc = subprocess.Popen(
            [str(self.binary), "--brokers", str(brokers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            first = self._next_line()
            if not first.startswith("bootstrap "):
                raise MockError(f"unexpected first line from skiff-kafka-mock: {first!r}")
        except BaseException:
            self._kill()
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe:
                    pipe.close()
            raise
        self.bootstrap: str = first.split(" ", 1)[1]

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self) -> str:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise MockError(f"skiff-kafka-mock did not answer within {self.timeout} s") from None
        if line is None:
            raise MockError(f"skiff-kafka-mock exited (status {self._proc.wait()})")
        return line

    def command(self, line: str) -> str:
        """Sends one command line; returns the text after "ok"."""
        if "\n" in line:
            raise ValueError("one command per line")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError) as e:
            raise MockError(f"skiff-kafka-mock is not running: {e}") from None
        answer = self._next_line()
        if answer == "ok" or answer.startswith("ok "):
            return answer[3:]
        if answer.startswith("error "):
            raise MockError(f"{line!r}: {answer[6:]}")
        raise MockError(f"{line!r}: unexpected answer {answer!r}")

    def create_topic(self, name: str, partitions: int = 1, replication: int = 1) -> None:
        self.command(f"topic {name} {partitions} {replication}")

    def push_errors(self, api: Union[str, int], *codes: Union[str, int]) -> None:
        """The next len(codes) requests of api (a name such as "Produce" or an ApiKey) fail,
        in order, with these Kafka error codes (names or numbers)."""
        if not codes:
            raise ValueError("push_errors needs at least one error code")
        self.command(" ".join(["errors", str(api), *(str(c) for c in codes)]))

    def clear_errors(self, api: Union[str, int]) -> None:
        self.command(f"clear {api}")

    def broker_down(self, broker: Union[int, str]) -> None:
        self.command(f"down {_broker(broker)}")

    def broker_up(self, broker: Union[int, str]) -> None:
        self.command(f"up {_broker(broker)}")

    def set_rtt(self, broker: Union[int, str], ms: int) -> None:
        self.command(f"rtt {_broker(broker)} {ms}")

    def set_leader(self, topic: str, partition: int, broker: int) -> None:
        """Moves the partition's leader to broker (-1: leaderless)."""
        self.command(f"leader {topic} {partition} {broker}")

    def close(self) -> None:
        """Asks the mock to quit, terminating it if it does not exit in time. Raises MockError
        if it had to be terminated or exited with a failure status (a sanitizer report, say)."""
        if self._closed:
            return
        self._closed = True
        if self._proc.poll() is None:
            try:
                self.command("quit")
            except MockError:
                pass
        try:
            if self._proc.stdin:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            status = self._proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            status = None
        self._reader.join(timeout=self.timeout)
        if self._proc.stdout:
            self._proc.stdout.close()
        if status != 0:
            raise MockError("skiff-kafka-mock " + (
                "did not exit after quit" if status is None else f"exited with status {status}"))

    def _kill(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> "MockCluster":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.close()
        except MockError:
            if exc_type is None:
                raise


def _broker(broker: Union[int, str]) -> str:
    return "all" if broker in (-1, "all") else str(int(broker))
