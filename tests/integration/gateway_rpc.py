"""Fast process-instance creation for load tests: Zeebe's gateway API called directly over gRPC
(grpcio from Debian's python3-grpcio), many calls in flight at once.

zbctl (devstack/zeebe_client.py) starts one process per call, about 20-50 ms each: fine for a
handful of instances, minutes for ten thousand. Here the few messages needed are encoded by hand
(field numbers of Camunda's gateway.proto, gateway_protocol.Gateway):

    CreateProcessInstanceRequest  {int64 processDefinitionKey = 1; string bpmnProcessId = 2;
                                   int32 version = 3; string variables = 4; ...}
    CreateProcessInstanceResponse {int64 processDefinitionKey = 1; string bpmnProcessId = 2;
                                   int32 version = 3; int64 processInstanceKey = 4; ...}

    keys = create_instances("127.0.0.1:26500", "my-process", [{"x": i} for i in range(10000)])

Calls the gateway refuses with RESOURCE_EXHAUSTED (backpressure) or UNAVAILABLE are retried
after a short pause, so every instance asked for is created exactly once (a call that fails
with any other status raises)."""
import json
import threading
import time

import grpc

CREATE = "/gateway_protocol.Gateway/CreateProcessInstance"
RETRYABLE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32/int64: ten bytes, two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _string(field: int, s: str) -> bytes:
    data = s.encode()
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def encode_create(process_id: str, variables) -> bytes:
    """CreateProcessInstanceRequest for the latest version (-1) of process_id."""
    return (_string(2, process_id) + _varint(3 << 3 | 0) + _varint(-1)
            + _string(4, json.dumps(variables)))


def decode_fields(data: bytes) -> dict:
    """Scalar fields of a protobuf message: {field number: int or bytes} (last one wins)."""
    fields, i = {}, 0
    while i < len(data):
        tag, i = _read_varint(data, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            fields[field], i = _read_varint(data, i)
        elif wire == 2:
            n, i = _read_varint(data, i)
            fields[field] = data[i:i + n]
            i += n
        elif wire == 1:
            fields[field] = int.from_bytes(data[i:i + 8], "little")
            i += 8
        elif wire == 5:
            fields[field] = int.from_bytes(data[i:i + 4], "little")
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


def _read_varint(data: bytes, i: int):
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def create_instances(address: str, process_id: str, variables_list, concurrency: int = 32,
                     timeout: float = 600.0):
    """Creates one instance per entry of variables_list, up to `concurrency` calls in flight;
    returns the process instance keys in the same order. Retries backpressure."""
    items = list(variables_list)
    keys = [None] * len(items)
    lock = threading.Condition()
    state = {"next": 0, "open": 0, "done": 0, "error": None, "retries": 0}
    deadline = time.monotonic() + timeout
    channel = grpc.insecure_channel(address)
    call = channel.unary_unary(CREATE, request_serializer=None, response_deserializer=None)

    def launch(i, attempt=0):
        fut = call.future(encode_create(process_id, items[i]), timeout=30)
        fut.add_done_callback(lambda f: finished(i, attempt, f))

    def finished(i, attempt, fut):
        err = fut.exception()
        if err is not None:
            code = err.code() if hasattr(err, "code") else None
            if code in RETRYABLE and time.monotonic() < deadline:
                with lock:
                    state["retries"] += 1
                # back off a little (grows with the attempt), off the gRPC callback thread
                t = threading.Timer(min(0.05 * (attempt + 1), 1.0), launch, (i, attempt + 1))
                t.daemon = True
                t.start()
                return
            with lock:
                state["error"] = err
                lock.notify_all()
            return
        keys[i] = decode_fields(fut.result())[4]
        with lock:
            state["open"] -= 1
            state["done"] += 1
            lock.notify_all()

    try:
        with lock:
            while state["done"] < len(items):
                if state["error"] is not None:
                    raise RuntimeError(f"CreateProcessInstance failed: {state['error']}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{state['done']} of {len(items)} instances created")
                while state["open"] < concurrency and state["next"] < len(items):
                    i = state["next"]
                    state["next"] += 1
                    state["open"] += 1
                    launch(i)
                lock.wait(1.0)
        create_instances.last_retries = state["retries"]
        return keys
    finally:
        channel.close()


create_instances.last_retries = 0
