"""A minimal Kubernetes CRI client (runtime.v1) for tests: gRPC through grpcio, the few
messages it needs encoded by hand in protobuf's wire format (field numbers from the
CRI's api.proto: k8s.io/cri-api pkg/apis/runtime/v1), so no protoc and no generated
code are needed. It plays the kubelet's part: sandbox, container, exec, stop, remove.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A message: field number -> value, or a list of values for a repeated field. A value
# is str/bytes (length-delimited), int/bool (varint), a nested message (dict) or a map
# (a Map: encoded as repeated {1: key, 2: value} entries).
Msg = dict[int, Any]


@dataclass(frozen=True)
class Map:
    items: Mapping[str, str]


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode(msg: Msg) -> bytes:
    out = bytearray()
    for num, value in sorted(msg.items()):
        values = value if isinstance(value, list) else [value]
        if isinstance(value, Map):
            values = [{1: k, 2: v} for k, v in value.items.items()]
        for v in values:
            if isinstance(v, bool | int):
                out += _varint(num << 3) + _varint(int(v))
            else:
                data = v.encode() if isinstance(v, str) else encode(v) if isinstance(
                    v, dict) else bytes(v)
                out += _varint(num << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


def decode(data: bytes) -> dict[int, list[Any]]:
    """Every field as a list of raw values (int for varints, bytes otherwise)."""
    out: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = n = 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(data):
        key = varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            val: Any = varint()
        elif wire == 2:
            n = varint()
            val = data[i:i + n]
            i += n
        elif wire == 1:
            val = data[i:i + 8]
            i += 8
        elif wire == 5:
            val = data[i:i + 4]
            i += 4
        else:
            raise ValueError(f"protobuf wire type {wire} not handled")
        out.setdefault(num, []).append(val)
    return out


def first(fields: dict[int, list[Any]], num: int, default: Any = None) -> Any:
    return fields.get(num, [default])[0]


class Cri:
    """The RuntimeService of a CRI endpoint (a unix socket path)."""

    SERVICE = "/runtime.v1.RuntimeService/"

    def __init__(self, socket_path: str) -> None:
        import grpc

        self.channel = grpc.insecure_channel(f"unix://{socket_path}")

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, msg: Msg, timeout: float = 300) -> dict[int, list[Any]]:
        rpc = self.channel.unary_unary(self.SERVICE + method,
                                       request_serializer=lambda b: b,
                                       response_deserializer=lambda b: b)
        return decode(rpc(encode(msg), timeout=timeout))

    def version(self) -> str:
        return str(first(self.call("Version", {1: "v1"}), 2, b"").decode())

    @staticmethod
    def sandbox_config(name: str, uid: str, log_dir: str) -> Msg:
        return {1: {1: name, 2: uid, 3: "default", 4: 0}, 2: name, 3: log_dir}

    def run_sandbox(self, config: Msg, handler: str) -> str:
        return str(first(self.call("RunPodSandbox", {1: config, 2: handler}), 1).decode())

    def sandbox_ip(self, sandbox: str) -> str:
        status = decode(first(self.call("PodSandboxStatus", {1: sandbox}), 1))
        network = decode(first(status, 5, b""))
        return str(first(network, 1, b"").decode())

    def create_container(self, sandbox: str, sandbox_config: Msg, name: str, image: str,
                         command: Sequence[str], log_path: str) -> str:
        config: Msg = {1: {1: name, 2: 0}, 2: {1: image}, 3: list(command), 11: log_path}
        reply = self.call("CreateContainer", {1: sandbox, 2: config, 3: sandbox_config})
        return str(first(reply, 1).decode())

    def start_container(self, cid: str) -> None:
        self.call("StartContainer", {1: cid})

    def exec_sync(self, cid: str, cmd: Sequence[str], timeout: int = 120) -> tuple[str, int]:
        reply = self.call("ExecSync", {1: cid, 2: list(cmd), 3: timeout}, timeout + 60)
        return first(reply, 1, b"").decode(), int(first(reply, 3, 0))

    def container_state(self, cid: str) -> tuple[int, int]:
        """(state: 0 created, 1 running, 2 exited, 3 unknown; exit code)."""
        status = decode(first(self.call("ContainerStatus", {1: cid}), 1))
        return int(first(status, 3, 0)), int(first(status, 7, 0))

    def stop_container(self, cid: str, timeout: int = 10) -> None:
        self.call("StopContainer", {1: cid, 2: timeout})

    def remove_container(self, cid: str) -> None:
        self.call("RemoveContainer", {1: cid})

    def stop_sandbox(self, sandbox: str) -> None:
        self.call("StopPodSandbox", {1: sandbox})

    def remove_sandbox(self, sandbox: str) -> None:
        self.call("RemovePodSandbox", {1: sandbox})
