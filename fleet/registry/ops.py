"""etcd transaction building blocks: request ops, compares, and batching.

Pure constructors of aetcd's generated protobuf messages, so every store
module spells a put, a delete or a fence the same way, and splits a long list
of ops into transactions under etcd's op-count and request-size limits.
"""

from __future__ import annotations

from typing import Any

from aetcd import rpc

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
MAX_TXN_BYTES = 1024 * 1024  # under etcd's default 1.5 MiB --max-request-bytes
EQUAL = rpc.Compare.EQUAL
GREATER = rpc.Compare.GREATER
LESS = rpc.Compare.LESS


def put(key: bytes, value: bytes, lease: int = 0) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def delete(key: bytes, end: bytes = b"") -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key, range_end=end))


def get(key: bytes, end: bytes = b"", revision: int = 0) -> Any:
    """A read (at ``revision``, 0 for the current one)."""
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key, range_end=end, revision=revision))


def compare(key: bytes, target: str, result: int, value: Any, end: bytes = b"") -> Any:
    kwargs: dict[str, Any] = {target: value}
    return rpc.Compare(
        key=key,
        range_end=end,
        result=result,
        target=getattr(rpc.Compare, target.upper().replace("_REVISION", "")),
        **kwargs,
    )


def created(key: bytes, revision: int, result: int = EQUAL) -> Any:
    """``create_revision`` compare: ``created(key, 0)`` means "key does not exist"."""
    return compare(key, "create_revision", result, revision)


def modified(key: bytes, revision: int, result: int = EQUAL, end: bytes = b"") -> Any:
    return compare(key, "mod_revision", result, revision, end)


def valued(key: bytes, value: bytes) -> Any:
    return compare(key, "value", EQUAL, value)


def on_lease(key: bytes, lease_id: int) -> Any:
    return compare(key, "lease", EQUAL, lease_id)


def batches(ops: list[Any]) -> list[list[Any]]:
    """Split ops into transactions under etcd's op-count and request-size limits."""
    result: list[list[Any]] = []
    current: list[Any] = []
    size = 0
    for op in ops:
        op_size = op.ByteSize()
        if current and (len(current) >= MAX_TXN_OPS or size + op_size > MAX_TXN_BYTES):
            result.append(current)
            current, size = [], 0
        current.append(op)
        size += op_size
    if current:
        result.append(current)
    return result
