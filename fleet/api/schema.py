"""Wire models of fleet API v1 and its pagination tokens.

The JSON shapes here are fleet's (``Documentation/api-v1.md``): camelCase
field names, every field omitted when empty. Request bodies are parsed with
pydantic so a malformed body becomes a 400 with a readable message, never a
500. The page token is fleet's, extended: URL-safe base64 (padded) of a
little-endian ``{Limit uint16, Page uint16, Revision uint64}``, where fleet had
only the first two fields; the revision is the etcd revision the first page
read, so later pages read the same snapshot (:mod:`fleet.api.listing`). Tokens
in fleet's own 4-byte form are still accepted (read at the current revision).
Clients only echo the token, so the original Go fleetctl pages through our
lists.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from fleet import machines
from fleet.errors import InvalidInput
from fleet.machines import MetadataChange

# ---------------------------------------------------------------------------
# Entities (responses)


class _Wire(BaseModel):
    """Base of every response entity: serialised without empty fields."""

    model_config = ConfigDict(populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        """The JSON object fleet would send: ``omitempty`` on every field."""
        wire: dict[str, Any] = _omit_empty(self.model_dump(by_alias=True))
        return wire


def _omit_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _omit_empty(v) for k, v in value.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_omit_empty(v) for v in value]
    return value


class UnitOption(BaseModel):
    """One ``Name=Value`` line of a unit file, with its section."""

    section: StrictStr = ""
    name: StrictStr = ""
    value: StrictStr = ""


class Unit(_Wire):
    name: str = ""
    options: list[UnitOption] = Field(default_factory=list)
    desired_state: str = Field("", alias="desiredState")
    current_state: str = Field("", alias="currentState")
    machine_id: str = Field("", alias="machineID")
    # Extension (feature B1): why the engine could not place the unit.
    reason: str = ""
    failure: str = ""


class UnitState(_Wire):
    name: str = ""
    hash: str = ""
    machine_id: str = Field("", alias="machineID")
    systemd_load_state: str = Field("", alias="systemdLoadState")
    systemd_active_state: str = Field("", alias="systemdActiveState")
    systemd_sub_state: str = Field("", alias="systemdSubState")
    # Extensions (omitted when empty): how a launch went (fleet.core.outcome).
    systemd_result: str = Field("", alias="systemdResult")
    start_job_result: str = Field("", alias="startJobResult")
    error: str = ""


class Machine(_Wire):
    id: str = ""
    primary_ip: str = Field("", alias="primaryIP")
    metadata: dict[str, str] = Field(default_factory=dict)
    # Extensions: present only on a cordoned machine.
    cordoned: bool | None = None
    cordon_reason: str = Field("", alias="cordonReason")
    # Extension: the fleetd version the machine runs.
    version: str = ""


class UnitPage(_Wire):
    units: list[Unit] = Field(default_factory=list)
    next_page_token: str = Field("", alias="nextPageToken")


class UnitStatePage(_Wire):
    states: list[UnitState] = Field(default_factory=list)
    next_page_token: str = Field("", alias="nextPageToken")


class MachinePage(_Wire):
    machines: list[Machine] = Field(default_factory=list)
    next_page_token: str = Field("", alias="nextPageToken")


class ErrorBody(BaseModel):
    code: int
    message: str


class ErrorEnvelope(BaseModel):
    """``{"error": {"code": N, "message": "..."}}``: the body of every error."""

    error: ErrorBody


def error_envelope(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# ---------------------------------------------------------------------------
# Requests


class DesiredStatesPatch(BaseModel):
    """Body of ``PATCH /units`` (extension): several desired states in one write."""

    desired_states: dict[StrictStr, StrictStr] = Field(alias="desiredStates")

    model_config = ConfigDict(populate_by_name=True)


class UnitPut(BaseModel):
    """Body of ``PUT /units/<name>``. Unknown fields are ignored, like Go's decoder."""

    name: StrictStr = ""
    desired_state: StrictStr = Field("", alias="desiredState")
    options: list[UnitOption] | None = None

    model_config = ConfigDict(populate_by_name=True)


class MetadataValue(BaseModel):
    """fleet's actual PATCH value shape: an object holding ``value``."""

    value: StrictStr = ""


class MachinePatchOp(BaseModel):
    """One op of ``PATCH /machines``. ``value`` may be ``{"value": "x"}`` (what
    fleet really accepts) or a bare ``"x"`` (what its documentation shows)."""

    op: StrictStr = ""
    path: StrictStr = ""
    value: MetadataValue | StrictStr | None = None

    def text(self) -> str:
        if isinstance(self.value, MetadataValue):
            return self.value.value
        return self.value or ""


MachinePatch = Annotated[list[MachinePatchOp], Field(description="JSON-patch-like operations")]

METADATA_PATH = re.compile(r"^/([^/]+)/metadata/([^/]+)$")  # the key: fleet.machines.KEY
PATCH_OPS = ("add", "remove", "replace")
DESIRED_STATES = ("inactive", "loaded", "launched")
DesiredStateText = Literal["inactive", "loaded", "launched"]


def validate_patch(ops: Sequence[MachinePatchOp]) -> list[MetadataChange]:
    """Check EVERY op before any is applied, so a bad op writes nothing.

    The rules are :mod:`fleet.machines`' (a key is ``[A-Za-z0-9_.-]+``; a path
    or value is valid UTF-8 of at most LINE_MAX (2048) bytes, so a unit's
    ``MachineMetadata=`` line could match it; fleet had no limit), worded with
    fleet's wire messages.
    """
    changes: list[MetadataChange] = []
    for op in ops:
        if op.op not in PATCH_OPS:
            raise InvalidInput("invalid op: expect add, remove, or replace")
        _check_text("machine metadata path invalid", op.path)
        match = METADATA_PATH.match(op.path)
        if match is None or machines.key_problem(match.group(2)) is not None:
            raise InvalidInput("machine metadata path invalid")
        if op.op == "remove":
            changes.append(MetadataChange(match.group(1), match.group(2), None))
            continue
        problem = machines.value_problem(op.text())
        if problem is not None:
            raise InvalidInput(f"invalid value: {problem}")
        changes.append(MetadataChange(match.group(1), match.group(2), op.text()))
    return changes


def _check_text(problem: str, text: str) -> None:
    why = machines.text_problem(text)
    if why is not None:
        raise InvalidInput(f"{problem}: {why}")


# ---------------------------------------------------------------------------
# Pagination

_TOKEN = struct.Struct("<HH")  # fleet's own: {Limit, Page}
_SNAPSHOT_TOKEN = struct.Struct("<HHQ")  # ours: fleet's, then the etcd revision listed
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class PageToken:
    """Which page of a list: pages are 1-based, ``limit`` items each, of the list
    as it was at etcd ``revision`` (0: not yet pinned, the first page or a token
    in fleet's own format, read at the current revision)."""

    limit: int
    page: int = 1
    revision: int = 0

    def encode(self) -> str:
        raw = (
            _SNAPSHOT_TOKEN.pack(self.limit, self.page, self.revision)
            if self.revision
            else _TOKEN.pack(self.limit, self.page)
        )
        return base64.urlsafe_b64encode(raw).decode("ascii")

    def next(self) -> PageToken:
        return PageToken(self.limit, self.page + 1, self.revision)

    def at(self, revision: int) -> PageToken:
        return PageToken(self.limit, self.page, revision)

    @classmethod
    def decode(cls, text: str, token_limit: int) -> PageToken:
        """Parse a client's token; InvalidInput (a 400) for anything but one we issued."""
        if "+" in text or "/" in text:
            raise InvalidInput("invalid page token: not URL-safe base64")
        try:
            # validate=True: Python's default decoder silently skips junk characters.
            raw = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
            raise InvalidInput("invalid page token: not URL-safe base64") from exc
        if len(raw) == _SNAPSHOT_TOKEN.size:
            limit, page, revision = _SNAPSHOT_TOKEN.unpack(raw)
        elif len(raw) == _TOKEN.size:
            (limit, page), revision = _TOKEN.unpack(raw), 0
        else:
            raise InvalidInput(
                f"invalid page token: expected {_TOKEN.size} or {_SNAPSHOT_TOKEN.size} bytes,"
                f" got {len(raw)}"
            )
        if limit != token_limit:
            raise InvalidInput(f"token limit must be {token_limit}")
        if page == 0:
            raise InvalidInput("token page must be greater than zero")
        if len(raw) == _SNAPSHOT_TOKEN.size and revision == 0:
            raise InvalidInput("token revision must be greater than zero")
        return cls(limit, page, revision)

    @classmethod
    def from_query(cls, text: str | None, token_limit: int) -> PageToken:
        if not text:
            return cls(token_limit, 1)
        return cls.decode(text, token_limit)


def paginate(items: Sequence[_T], token: PageToken) -> tuple[list[_T], str]:
    """The page's items and the next token ("" when this is the last page)."""
    start = (token.page - 1) * token.limit
    stop = start + token.limit
    page = list(items[start:stop])
    return page, token.next().encode() if stop < len(items) else ""
