"""``GET /cluster`` (extension, issue 11): what ``fleetctl cluster-status`` and
``list-machines``' status and leader fields need beyond ``/machines``: the engine
leader, the lost machines and the etcd members with their health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fleet.core.model import EtcdMember, LostMachine
from fleet.ports import ClusterView


def lost_wire(lost: LostMachine) -> dict[str, Any]:
    machine = lost.machine
    return {
        "id": machine.id,
        "primaryIP": machine.public_ip,
        "metadata": dict(machine.metadata),
        "version": machine.version,
        "lostSince": lost.since,
    }


def member_wire(member: EtcdMember) -> dict[str, Any]:
    return {
        "id": member.id,
        "name": member.name,
        "clientURLs": list(member.client_urls),
        "healthy": member.healthy,
        "leader": member.leader,
        "version": member.version,
        "dbSize": member.db_size,
        "error": member.error,
    }


def cluster_router(view: ClusterView) -> APIRouter:
    router = APIRouter()

    @router.get("/cluster", responses={200: {"description": "leader, lost machines, etcd"}})
    async def get_cluster(etcd: str = "") -> JSONResponse:
        leader = await view.get_leader()
        lost = await view.list_lost_machines()
        members = await view.etcd_members() if etcd.lower() in ("1", "true") else []
        body: dict[str, Any] = {
            "leader": None if leader is None else {"machineID": leader[0], "version": leader[1]},
            "lostMachines": [lost_wire(m) for m in lost],
            "etcdMembers": [member_wire(m) for m in members],
        }
        return JSONResponse(body)

    return router
