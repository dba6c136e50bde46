"""The gateway going away (broker stopped) and coming back: skiff reports not ready while it is
gone, reconnects with backoff on its own, and jobs flow again. Uses a broker of its own so the
restart does not disturb the other tests."""
import os
import subprocess

import pytest

from bpmn import service_task
from conftest import ZEEBE_SH, free_port_block, wait_until
import zeebe_client

PORT, MONITOR = str(free_port_block(4)), str(free_port_block(1))


@pytest.fixture(scope="module")
def own_broker():
    env = dict(os.environ, SKIFF_ZEEBE_PORT=PORT, SKIFF_ZEEBE_MONITOR_PORT=MONITOR)
    env.pop("SKIFF_ZEEBE_RECORDS", None)
    env.pop("SKIFF_ZEEBE_RUN_DIR", None)
    subprocess.run([str(ZEEBE_SH), "start"], env=env, check=True)
    yield env
    subprocess.run([str(ZEEBE_SH), "stop"], env=env, check=False)


def deployed(client, path):
    try:
        client.deploy(str(path))
        return True
    except zeebe_client.ZbctlError as e:
        if "UNAVAILABLE" not in str(e):
            raise
        return False


def run_one(client, tmp_path, pid, job_type):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type))
    # right after a restart the gateway may briefly answer UNAVAILABLE for the partition
    wait_until(lambda: deployed(client, path), timeout=30, what="deployment accepted")
    return client.create_instance_with_result(pid, {"x": 3}, timeout_s=60)


def test_gateway_restart_reconnects(own_broker, stack, tmp_path, uid):
    address = f"127.0.0.1:{PORT}"
    client = zeebe_client.Zeebe(address=address)
    job_type = f"it-restart-{uid}"
    skiff = stack.skiff([job_type], address=address, zeebe_backoff_max="2s")
    stack.handler(skiff, [job_type])
    assert run_one(client, tmp_path, f"p-before-{uid}", job_type)["variables"]["doubled"] == 6

    subprocess.run([str(ZEEBE_SH), "stop"], env=own_broker, check=True)
    wait_until(lambda: skiff.http("/readyz")[0] == 503, timeout=30, what="not ready")
    assert "not reachable" in skiff.http("/readyz")[1]

    subprocess.run([str(ZEEBE_SH), "start"], env=own_broker, check=True)
    wait_until(lambda: skiff.http("/readyz")[0] == 200, timeout=60, what="ready again")
    assert run_one(client, tmp_path, f"p-after-{uid}", job_type)["variables"]["doubled"] == 6
    assert skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="activated") == 2
    assert skiff.proc.poll() is None
