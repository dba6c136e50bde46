"""The skiff binary's command line: configuration problems are all reported at once, with key,
source and expected form, and stop start-up; the reference doc matches the binary."""
import os
import subprocess
from pathlib import Path

from conftest import ROOT, SKIFF_BIN


def run(args, tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SKIFF_", "ZEEBE_", "CAMUNDA_"))}
    e.update(env)
    return subprocess.run([str(SKIFF_BIN)] + args, capture_output=True, text=True, env=e,
                          cwd=tmp_path, timeout=30)


def test_config_check_reports_every_problem_from_every_source(tmp_path):
    config = tmp_path / "skiff.json"
    config.write_text('{"zeebe": {"job_timeout": "soon"}, "handler.max_frame": "4MiB"}')
    annotations = tmp_path / "annotations"
    annotations.write_text('kubernetes.io/config.seen="2024-01-01"\n'
                           'skiff.io/zeebe.max_jobs_active="0"\n'
                           'skiff.io/zeebe.jobtypes="a,b"\n')
    r = run(["config", "check", "--config", str(config), "--annotations", str(annotations),
             "--log.level=loud"], tmp_path, SKIFF_SHUTDOWN_GRACE_PERIOD="-5s")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    problems = lines[:-1]
    assert lines[-1] == "5 problems found", r.stdout
    expect = [("zeebe.job_timeout", "file", "duration"),
              ("zeebe.max_jobs_active", "annotations", "1..10000"),
              ("zeebe.jobtypes", "annotations", ""),
              ("shutdown.grace_period", "SKIFF_SHUTDOWN_GRACE_PERIOD", "duration"),
              ("log.level", "command line", "debug")]
    for key, source, form in expect:
        assert any(key in p and source in p and form in p for p in problems), \
            f"no problem line names {key} / {source} / {form}:\n{r.stdout}"


def test_invalid_configuration_stops_start_up(tmp_path):
    sock = tmp_path / "handler.sock"
    r = run([f"--handler.socket={sock}", "--zeebe.max_jobs_active=0"], tmp_path)
    assert r.returncode == 2
    assert "zeebe.max_jobs_active" in r.stderr and "not starting" in r.stderr
    assert not sock.exists()


def test_valid_configuration_and_aliases(tmp_path):
    r = run(["config", "check"], tmp_path, CAMUNDA_ZEEBE_ADDRESS="gw:26500",
            SKIFF_ZEEBE_JOB_TYPES="a,b", OTEL_SERVICE_NAME="underwriting")
    assert r.returncode == 0 and "configuration ok" in r.stdout, r.stdout


def test_reference_doc_is_generated_from_the_binary(tmp_path):
    r = run(["config", "docs"], tmp_path)
    assert r.returncode == 0
    assert r.stdout == (ROOT / "docs" / "configuration.md").read_text()
