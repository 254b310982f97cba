"""The SSH options of one fleetctl invocation (:class:`SSHSettings`). The SSH
package defines them itself so that it depends on nothing else of fleetctl:
:meth:`fleetctl.client.ClientSettings.ssh_settings` builds them from the global
flags.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class SSHSettings:
    username: str = "core"
    timeout: float = 10.0
    known_hosts_file: Path = field(
        default_factory=lambda: Path("~/.fleetctl/known_hosts").expanduser()
    )
    strict_host_key_checking: bool = True
    identity_files: tuple[Path, ...] = ()
    # Where answers to the unknown-host prompt come from, and where it is printed.
    prompt_in: TextIO = field(default=sys.stdin, compare=False)
    prompt_out: TextIO = field(default=sys.stderr, compare=False)
