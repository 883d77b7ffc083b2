"""CPU per task message sent, kombu's Redis transport against ours (worker/broker_transport.py,
one Redis client per channel instead of one per message). Not a test: run it directly,

    python tests/benchmarks/bench_publish.py [--messages 5000] [--rounds 3]

Each round sends ``--messages`` `reelbatch.poll` task messages (and, as the worker does, a
task-sent event for each) to the embedded Redis with each transport in turn, and prints the
process CPU time and wall time per message.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reelbatch.scheduler.stack.embedded import EmbeddedRedis, free_port  # noqa: E402
from reelbatch.worker.app import app, drop_pools, use_broker  # noqa: E402
from reelbatch.worker.broker_transport import transport_for  # noqa: E402
from tests.benchmarks._common import table  # noqa: E402


def send(messages: int, transport: str | None) -> tuple[float, float]:
    """(CPU s, wall s) per message sent with ``transport`` (None: kombu's)."""
    app.conf.broker_transport = transport
    app.send_task("reelbatch.poll", args=["bench", "warm-up"], queue="bench-publish")   # connect
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(messages):
        app.send_task("reelbatch.poll", args=["bench", f"item{i}"], queue="bench-publish")
    return (time.process_time() - cpu) / messages, (time.perf_counter() - wall) / messages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp, \
            EmbeddedRedis(Path(tmp), port=free_port()) as server:
        use_broker(server.url)
        ours = transport_for(server.url)
        for round_ in range(1, args.rounds + 1):
            for label, transport in (("kombu's redis transport", None), ("ours", ours)):
                drop_pools()   # the next message connects with the transport set for it
                cpu, wall = send(args.messages, transport)
                rows.append([round_, label, args.messages, f"{cpu * 1e6:.0f} us", f"{wall * 1e6:.0f} us"])
    print(table(["round", "transport", "messages", "CPU/message", "wall/message"], rows))


if __name__ == "__main__":
    main()
