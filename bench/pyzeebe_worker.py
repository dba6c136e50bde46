"""Peer contender (Python): a pyzeebe job worker doing the bench's trivial work: complete with
{"ok": True}. Runs in bench/.venv (pyzeebe from PyPI).

    bench/.venv/bin/python bench/pyzeebe_worker.py --address 127.0.0.1:26700 --types a,b \
        [--max-jobs 32] [--poll-retry-delay 5]
"""
import argparse
import asyncio
import os
import signal

from pyzeebe import ZeebeWorker, create_insecure_channel


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--types", required=True)
    ap.add_argument("--max-jobs", type=int, default=32)
    ap.add_argument("--poll-retry-delay", type=float, default=None,
                    help="seconds pyzeebe sleeps when max_running_jobs are running (its default: 5)")
    a = ap.parse_args()
    kw = {} if a.poll_retry_delay is None else {"poll_retry_delay": a.poll_retry_delay}
    worker = ZeebeWorker(create_insecure_channel(grpc_address=a.address), **kw)
    for job_type in a.types.split(","):
        async def work():
            return {"ok": True}
        worker.task(task_type=job_type, max_jobs_to_activate=a.max_jobs,
                    max_running_jobs=a.max_jobs)(work)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("ready", flush=True)
    await worker.work()


asyncio.run(main())
