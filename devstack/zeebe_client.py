"""Drive the devstack's Zeebe gateway with Camunda's own CLI, zbctl (Python 3 stdlib only).

zbctl is the real static binary from the npm package "zbctl" (devstack/node_modules, installed
by devstack/setup.sh). Every call uses a plaintext connection (--insecure) to the address
given, or $SKIFF_ZEEBE_ADDRESS, or 127.0.0.1:$SKIFF_ZEEBE_PORT (26500); Zeebe(ca_path=...) uses
TLS with that CA instead.

zbctl prints int64 keys as JSON strings; the functions here turn every "key" / "...Key" field
that holds a decimal string into an int, so results compare directly with records.py records.

    import zeebe_client as zc
    zc.deploy("devstack/testdata/devstack-smoke.bpmn")
    pi = zc.create_instance("devstack-smoke", {"a": 1})          # pi["processInstanceKey"]
    res = zc.create_instance_with_result("my-process", {"a": 1}, timeout_s=30)
    res["variables"]                                             # dict
"""

import json
import os
import subprocess

__all__ = [
    "ZbctlError", "Zeebe", "default_address", "zbctl_path", "deploy", "create_instance",
    "create_instance_with_result", "status", "activate_jobs", "complete_job", "fail_job",
    "throw_error", "publish_message", "cancel_instance", "zbctl",
]

_HERE = os.path.dirname(os.path.abspath(__file__))

# zbctl reads these; a test's OAuth settings must not leak into plain devstack calls.
_SCRUB_ENV = ("ZEEBE_ADDRESS", "ZEEBE_HOST", "ZEEBE_PORT", "ZEEBE_CLIENT_ID",
              "ZEEBE_CLIENT_SECRET", "ZEEBE_AUTHORIZATION_SERVER_URL", "ZEEBE_TOKEN_AUDIENCE",
              "ZEEBE_CA_CERTIFICATE_PATH", "ZEEBE_OVERRIDE_AUTHORITY", "ZEEBE_INSECURE_CONNECTION",
              "ZEEBE_CLIENT_CONFIG_PATH")


class ZbctlError(RuntimeError):
    """zbctl exited non-zero; .code is the gRPC status name when zbctl printed one."""

    def __init__(self, args, returncode, stdout, stderr):
        self.args_ = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.code = None
        for name in ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "NOT_FOUND", "DEADLINE_EXCEEDED",
                     "INVALID_ARGUMENT", "FAILED_PRECONDITION", "ALREADY_EXISTS", "INTERNAL",
                     "UNAUTHENTICATED", "PERMISSION_DENIED", "CANCELED", "UNKNOWN"):
            if "code = %s" % "".join(p.capitalize() for p in name.split("_")) in stderr \
                    or "code = %s" % name in stderr:
                self.code = name
                break
        super().__init__("zbctl %s failed (exit %d, %s): %s" % (
            " ".join(args), returncode, self.code or "no gRPC code", stderr.strip()[-2000:]))


def zbctl_path():
    return os.environ.get("SKIFF_ZBCTL") or os.path.join(
        _HERE, "node_modules", "zbctl", "bin", "zbctl-cli.linux")


def default_address():
    return os.environ.get("SKIFF_ZEEBE_ADDRESS") or "%s:%s" % (
        os.environ.get("SKIFF_ZEEBE_HOST", "127.0.0.1"),
        os.environ.get("SKIFF_ZEEBE_PORT", "26500"))


def _intify(obj):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if (k == "key" or k.endswith("Key")) and isinstance(v, str) and v.isdigit():
                v = int(v)
            out[k] = _intify(v)
        return out
    if isinstance(obj, list):
        return [_intify(v) for v in obj]
    return obj


def _json_vars(variables):
    if variables is None:
        return "{}"
    if isinstance(variables, str):
        return variables
    return json.dumps(variables)


class Zeebe:
    """zbctl bound to one gateway address."""

    def __init__(self, address=None, request_timeout_s=10.0, ca_path=None):
        self.address = address or default_address()
        self.request_timeout_s = request_timeout_s
        self.security = ["--certPath", ca_path] if ca_path else ["--insecure"]

    def zbctl(self, *args, request_timeout_s=None, parse=True):
        """Run zbctl with args; return its parsed JSON output (or text if parse is False or the
        output is not JSON). Raises ZbctlError on a non-zero exit."""
        rt = request_timeout_s if request_timeout_s is not None else self.request_timeout_s
        cmd = [zbctl_path(), *self.security, "--address", self.address,
               "--requestTimeout", "%dms" % int(rt * 1000)] + [str(a) for a in args]
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=rt + 30)
        if p.returncode != 0:
            raise ZbctlError(list(args), p.returncode, p.stdout, p.stderr)
        if not parse:
            return p.stdout
        try:
            return _intify(json.loads(p.stdout))
        except ValueError:
            return p.stdout

    def deploy(self, *paths):
        """Deploy BPMN/DMN/form files; returns zbctl's JSON (key, processes[...])."""
        return self.zbctl("deploy", *paths)

    def create_instance(self, process_id, variables=None, version=None):
        """Start an instance; returns {processDefinitionKey, bpmnProcessId, version,
        processInstanceKey, tenantId}."""
        args = ["create", "instance", process_id, "--variables", _json_vars(variables)]
        if version is not None:
            args += ["--version", version]
        return self.zbctl(*args)

    def create_instance_with_result(self, process_id, variables=None, timeout_s=30.0,
                                    fetch_variables=None):
        """Start an instance and wait for it to complete; returns the same fields as
        create_instance plus "variables" (parsed to a dict). Raises ZbctlError with code
        DEADLINE_EXCEEDED if it does not complete within timeout_s."""
        flag = "--withResult"
        if fetch_variables:
            flag += "=" + ",".join(fetch_variables)
        res = self.zbctl("create", "instance", process_id, "--variables", _json_vars(variables),
                         flag, request_timeout_s=timeout_s)
        if isinstance(res, dict) and isinstance(res.get("variables"), str):
            res["variables"] = json.loads(res["variables"] or "{}")
        return res

    def status(self):
        """zbctl status text (topology)."""
        return self.zbctl("status", parse=False)

    def activate_jobs(self, job_type, max_jobs=1, timeout_s=300, worker="devstack"):
        """Activate up to max_jobs jobs; returns a list of jobs (variables/customHeaders parsed)."""
        res = self.zbctl("activate", "jobs", job_type, "--maxJobsToActivate", max_jobs,
                         "--timeout", "%ds" % int(timeout_s), "--worker", worker)
        jobs = (res or {}).get("jobs", []) if isinstance(res, dict) else []
        for j in jobs:
            for k in ("variables", "customHeaders"):
                if isinstance(j.get(k), str):
                    j[k] = json.loads(j[k] or "{}")
        return jobs

    def complete_job(self, job_key, variables=None):
        return self.zbctl("complete", "job", job_key, "--variables", _json_vars(variables),
                          parse=False)

    def fail_job(self, job_key, retries=0, error_message="failed by devstack"):
        return self.zbctl("fail", "job", job_key, "--retries", retries,
                          "--errorMessage", error_message, parse=False)

    def throw_error(self, job_key, error_code, error_message=""):
        return self.zbctl("throwError", "job", job_key, "--errorCode", error_code,
                          "--errorMessage", error_message, parse=False)

    def publish_message(self, name, correlation_key, variables=None, ttl_s=None):
        args = ["publish", "message", name, "--correlationKey", correlation_key,
                "--variables", _json_vars(variables)]
        if ttl_s is not None:
            args += ["--ttl", "%ds" % int(ttl_s)]
        return self.zbctl(*args, parse=False)

    def cancel_instance(self, process_instance_key):
        return self.zbctl("cancel", "instance", process_instance_key, parse=False)


_default = None


def _client():
    global _default
    if _default is None or _default.address != default_address():
        _default = Zeebe()
    return _default


def zbctl(*args, **kw):
    return _client().zbctl(*args, **kw)


def deploy(path, *more):
    return _client().deploy(path, *more)


def create_instance(process_id, variables=None, version=None):
    return _client().create_instance(process_id, variables, version)


def create_instance_with_result(process_id, variables=None, timeout_s=30.0, fetch_variables=None):
    return _client().create_instance_with_result(process_id, variables, timeout_s, fetch_variables)


def status():
    return _client().status()


def activate_jobs(job_type, max_jobs=1, timeout_s=300, worker="devstack"):
    return _client().activate_jobs(job_type, max_jobs, timeout_s, worker)


def complete_job(job_key, variables=None):
    return _client().complete_job(job_key, variables)


def fail_job(job_key, retries=0, error_message="failed by devstack"):
    return _client().fail_job(job_key, retries, error_message)


def throw_error(job_key, error_code, error_message=""):
    return _client().throw_error(job_key, error_code, error_message)


def publish_message(name, correlation_key, variables=None, ttl_s=None):
    return _client().publish_message(name, correlation_key, variables, ttl_s)


def cancel_instance(process_instance_key):
    return _client().cancel_instance(process_instance_key)
