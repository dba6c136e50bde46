"""Small stdlib-only helpers shared by devstack's Python scripts, the tests and the benches.

Importable with devstack/ on sys.path (tests/integration/conftest.py, bench/zeebe_bench.py and
devstack's own scripts have it there already):

    shell_env(cmd, env=None)   the `export K=V` lines a devstack script's `env` command prints
    terminate(proc, timeout)   SIGTERM a child process, SIGKILL it if it outlives the timeout
"""
import shlex
import subprocess


def shell_env(cmd, env=None):
    """Runs `cmd` (a devstack script's `env` command, e.g. [".../kafka.sh", "env"]) with the
    environment `env` (None: this process's) and returns its `export K=V` lines as a dict; the
    values are unquoted as the shell would (they are printed with printf %q)."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    result = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            k, _, v = words[1].partition("=")
            result[k] = v
    return result


def terminate(proc, timeout=10):
    """SIGTERM to a subprocess.Popen still running, then waits up to `timeout` seconds for it
    to exit; SIGKILL (and a wait) if it has not by then."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
