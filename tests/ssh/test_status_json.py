"""``fleetctl status -o json``: each unit's systemd properties (``systemctl show``) on
each of its machines, over a real sshd against a real etcd (simulated machines, a
fake ``systemctl`` on the SSH session's PATH, as in test_remote)."""

from __future__ import annotations

import json

import pytest

from fleetctl.commands.remote import parse_properties
from tests.ssh.test_remote import M1, M2, Fleetctl, fleetctl  # noqa: F401 (fixture)

pytestmark = pytest.mark.etcd

FAKE_SHOW = """#!/bin/sh
echo "$(basename "$0") $*" >> {log}
for unit; do :; done
case "$unit" in failing*) echo "no such thing" >&2; exit 4;; esac
echo "Id=$unit"
echo "ActiveState=active"
echo "SubState=running"
echo "ExecStart={{ path=/bin/sh ; argv[]=/bin/sh -c a=b }}"
echo "Environment="
"""


def test_parse_properties_keeps_equals_in_values() -> None:
    assert parse_properties("A=1\nB=x=y\n\nnot a property\nC=\n") == {
        "A": "1",
        "B": "x=y",
        "C": "",
    }


def test_status_json_has_the_properties_of_each_unit(fleetctl: Fleetctl) -> None:  # noqa: F811
    fleetctl._script("systemctl", FAKE_SHOW)
    result = fleetctl("status", f"--ssh-port={fleetctl.sshd.port}", "-o", "json", "hello", "global")
    assert result.code == 0, result.err
    items = json.loads(result.out)
    assert [(i["unit"], i["machine_id"]) for i in items] == [
        ("hello.service", M1),
        ("global.service", M1),
        ("global.service", M2),
    ]
    hello = items[0]
    assert hello["machine_ip"] == "127.0.0.1"
    assert hello["properties"]["Id"] == "hello.service"
    assert hello["properties"]["ActiveState"] == "active"
    assert hello["properties"]["ExecStart"] == "{ path=/bin/sh ; argv[]=/bin/sh -c a=b }"
    assert hello["properties"]["Environment"] == ""
    assert "error" not in hello
    assert fleetctl.calls() == [
        "systemctl show --no-pager hello.service",
        "systemctl show --no-pager global.service",
        "systemctl show --no-pager global.service",
    ]


def test_status_json_reports_a_failed_call_and_exits_non_zero(
    fleetctl: Fleetctl,  # noqa: F811
) -> None:
    fleetctl._script("systemctl", FAKE_SHOW)
    result = fleetctl(
        "status", f"--ssh-port={fleetctl.sshd.port}", "-o", "json", "failing", "hello"
    )
    assert result.code == 4
    assert "no such thing" in result.err
    items = json.loads(result.out)
    assert items[0] == {
        "unit": "failing.service",
        "machine_id": M2,
        "machine_ip": "127.0.0.1",
        "properties": {},
        "error": "systemctl show exited with status 4",
    }
    assert items[1]["properties"]["Id"] == "hello.service"
