"""``--replace``: fleet's rule for when a local unit file may overwrite a registry unit.

Pure: given the command, the registry unit's desired state and the two
hashes, say what to do. ``submit`` may replace only ``inactive`` units,
``load`` also ``loaded`` ones, ``start`` any, so a command never silently
moves a unit backwards through the state ladder.
"""

from __future__ import annotations

from enum import StrEnum

from fleet.core.model import DesiredState

ALLOWED_REPLACE: dict[str, frozenset[DesiredState]] = {
    "submit": frozenset({DesiredState.INACTIVE}),
    "load": frozenset({DesiredState.INACTIVE, DesiredState.LOADED}),
    "start": frozenset({DesiredState.INACTIVE, DesiredState.LOADED, DesiredState.LAUNCHED}),
}


class ReplaceVerdict(StrEnum):
    REPLACE = "replace"
    SAME = "same"  # stdout: Found same Unit(X) in Registry, nothing to do
    REFUSED = "refused"  # stderr: Warning: can not replace Unit(X) in state 'Y', ...


def replace_verdict(
    command: str, desired: DesiredState, local_hash: str, registry_hash: str
) -> ReplaceVerdict:
    if local_hash == registry_hash:
        return ReplaceVerdict.SAME
    if desired in ALLOWED_REPLACE[command]:
        return ReplaceVerdict.REPLACE
    return ReplaceVerdict.REFUSED


def verdict_message(verdict: ReplaceVerdict, name: str, desired: DesiredState) -> str:
    if verdict is ReplaceVerdict.SAME:
        return f"Found same Unit({name}) in Registry, nothing to do"
    if verdict is ReplaceVerdict.REFUSED:
        return (
            f"Warning: can not replace Unit({name}) in state '{desired}', "
            "use the appropriate command"
        )
    return f"Replacing Unit({name}) in Registry"
