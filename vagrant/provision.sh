#!/usr/bin/env bash
# Provision one Vagrant VM: Debian packages, an etcd member of the static
# cluster, the project's venv and fleetd through the same provisioning code
# as fleet-cluster (`python -m fleet.cluster provision --root / ...`).
# Inputs (from the Vagrantfile): FLEET_NAME, FLEET_IP, ETCD_INITIAL_CLUSTER,
# ETCD_SERVERS, FLEET_METADATA. The project is at /vagrant. Idempotent.
set -euo pipefail
: "${FLEET_NAME:?}" "${FLEET_IP:?}" "${ETCD_INITIAL_CLUSTER:?}" "${ETCD_SERVERS:?}"
FLEET_METADATA=${FLEET_METADATA:-hostname=$FLEET_NAME}
VENV=/opt/fleet/venv

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    etcd-server etcd-client python3 python3-venv python3-pip dbus openssh-server

# etcd: one member per VM, static bootstrap (Debian reads /etc/default/etcd).
cat > /etc/default/etcd <<CONF
ETCD_NAME=$FLEET_NAME
ETCD_DATA_DIR=/var/lib/etcd/default
ETCD_LISTEN_PEER_URLS=http://$FLEET_IP:2380
ETCD_LISTEN_CLIENT_URLS=http://$FLEET_IP:2379,http://127.0.0.1:2379
ETCD_INITIAL_ADVERTISE_PEER_URLS=http://$FLEET_IP:2380
ETCD_ADVERTISE_CLIENT_URLS=http://$FLEET_IP:2379
ETCD_INITIAL_CLUSTER=$ETCD_INITIAL_CLUSTER
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_INITIAL_CLUSTER_TOKEN=fleet-vagrant
ETCD_AUTO_COMPACTION_MODE=revision
ETCD_AUTO_COMPACTION_RETENTION=1000
CONF
systemctl enable etcd
systemctl restart --no-block etcd   # the first member waits for its peers

# The project, installed the way a user would (pyproject pins).
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q /vagrant

"$VENV/bin/python" -m fleet.cluster provision --root / \
    --etcd-servers "$ETCD_SERVERS" \
    --public-ip "$FLEET_IP" \
    --metadata "$FLEET_METADATA" \
    --agent-ttl 30s \
    --fleetd "$VENV/bin/fleetd" \
    --units-dir /vagrant/units

systemctl daemon-reload
systemctl enable fleet.socket fleet.service
systemctl restart fleet.socket fleet.service
echo "$FLEET_NAME: fleetd provisioned ($FLEET_IP, metadata $FLEET_METADATA)"
