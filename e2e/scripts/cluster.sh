#!/usr/bin/env bash
# Starts and stops the local cluster: a bridge network, etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, a Redis Cluster on the bridge address and the socketfleet node agent. Everything runs
# as local processes; state, logs and the kubeconfig live in e2e/.local.
#
# Usage:
#   cluster.sh up     build what is missing, start everything, wait until the node is Ready
#   cluster.sh down   stop everything and remove the bridge, pod network namespaces and veths
#                     (safe to run again, and after a crash)
#   cluster.sh status show which processes run
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------------------------------------------
# Network

# Fails unless CIDR is free: no route other than the default one may contain it or lie inside it,
# except routes of our own bridge from an earlier run.
check_subnet_free() {
  local cidr=$1 routes
  routes=$( (ip -o route show match "$cidr"; ip -o route show root "$cidr"; ip -o route show table local root "$cidr") |
    grep -v '^default ' | grep -v " dev $bridge " || true)
  [[ -z $routes ]] || die "$cidr is already routed on this machine: $routes
set SOCKETFLEET_SUBNET_PREFIX to a free /24 (for example 10.245.0)"
}

network_up() {
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    check_subnet_free "$subnet"
    # Service cluster IPs become /32 addresses on the bridge, so their range must be free as well.
    check_subnet_free "$service_cidr"
    ip link add "$bridge" type bridge
  fi
  ip addr replace "$node_ip/24" dev "$bridge"
  ip link set "$bridge" up
  log "bridge $bridge has $node_ip/24"
}

# Removes what the node agent may have left behind: processes inside pod network namespaces, the
# namespaces (which removes their veth ends), stray host-side veths, and last the bridge.
network_down() {
  local ns pids link
  for ns in $(ip netns list | awk '{print $1}' | grep "^$netns_prefix" || true); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
    ip netns delete "$ns" 2>/dev/null || true
  done
  rm -rf /etc/netns/"$netns_prefix"*
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$veth_prefix" || true); do
    ip link delete "$link" 2>/dev/null || true
  done
  if ip link show "$bridge" >/dev/null 2>&1; then
    ip link delete "$bridge"
    log "removed bridge $bridge"
  fi
}

# ---------------------------------------------------------------------------------------------------
# Control plane

start_etcd() {
  # Each `up` starts from an empty store: the cluster is for trying things and for tests.
  rm -rf "$state_dir/etcd"
  start_process etcd "$etcd_bin/etcd" \
    --name local --data-dir "$state_dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_client_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_client_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "local=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync=true --auto-compaction-retention=1 --log-level=warn
  wait_for "etcd to serve clients" 60 etcd \
    curl -sf "http://127.0.0.1:$etcd_client_port/health"
}

start_apiserver() {
  start_process kube-apiserver "$kube_bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_client_port" \
    --bind-address "$node_ip" --advertise-address "$node_ip" --secure-port "$apiserver_port" \
    --tls-cert-file "$pki_dir/apiserver.crt" --tls-private-key-file "$pki_dir/apiserver.key" \
    --client-ca-file "$pki_dir/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki_dir/sa.pub" \
    --service-account-signing-key-file "$pki_dir/sa.key" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --service-cluster-ip-range "$service_cidr" \
    --kubelet-client-certificate "$pki_dir/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki_dir/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki_dir/ca.crt" \
    --kubelet-preferred-address-types InternalIP
  wait_for "kube-apiserver /readyz" 120 kube-apiserver \
    "$kube_bin/kubectl" --kubeconfig "$kubeconfig" get --raw /readyz
}

start_controller_manager() {
  local kc=$pki_dir/controller-manager.kubeconfig
  start_process kube-controller-manager "$kube_bin/kube-controller-manager" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$controller_manager_port" \
    --controllers '*' --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$pki_dir/sa.key" \
    --root-ca-file "$pki_dir/ca.crt" \
    --cluster-signing-cert-file "$pki_dir/ca.crt" --cluster-signing-key-file "$pki_dir/ca.key" \
    --service-cluster-ip-range "$service_cidr"
}

start_scheduler() {
  local kc=$pki_dir/scheduler.kubeconfig
  start_process kube-scheduler "$kube_bin/kube-scheduler" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$scheduler_port" --leader-elect=false
}

# ---------------------------------------------------------------------------------------------------
# Redis Cluster and node agent

start_redis() {
  local script=$e2e_dir/scripts/redis-cluster.sh
  [[ -f $script ]] || die "missing $script"
  REDIS_CLUSTER_BIND=$node_ip REDIS_CLUSTER_PORT=$redis_base_port \
    REDIS_CLUSTER_DIR=$state_dir/redis bash "$script" start >"$log_dir/redis-cluster.log" 2>&1 ||
    {
      tail -n 30 "$log_dir/redis-cluster.log" >&2
      die "Redis Cluster did not start (log: $log_dir/redis-cluster.log)"
    }
  log "Redis Cluster on $node_ip:$redis_base_port-$((redis_base_port + 5))"
}

# Publishes the Redis Cluster inside Kubernetes the way a Redis operator would: Service
# redis-cluster.redis (port 6379, seeds on the three masters) and redis-0..2.redis (one master each),
# as selector-less Services with hand-written EndpointSlices pointing at the bridge address.
publish_redis_services() {
  local i name manifest="apiVersion: v1
kind: Namespace
metadata:
  name: redis
"
  for name in redis-cluster redis-0 redis-1 redis-2; do
    manifest+="---
apiVersion: v1
kind: Service
metadata:
  name: $name
  namespace: redis
spec:
  ports:
  - name: redis
    port: 6379
    targetPort: 6379
"
  done
  for i in 0 1 2; do
    for name in redis-cluster "redis-$i"; do
      manifest+="---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $name-$i
  namespace: redis
  labels:
    kubernetes.io/service-name: $name
    endpointslice.kubernetes.io/managed-by: socketfleet-local-cluster
addressType: IPv4
ports:
- name: redis
  port: $((redis_base_port + i))
  protocol: TCP
endpoints:
- addresses: [\"$node_ip\"]
  conditions:
    ready: true
"
    done
  done
  echo "$manifest" | "$kube_bin/kubectl" --kubeconfig "$kubeconfig" apply -f - >/dev/null
  log "Redis Cluster published as redis-cluster.redis.svc:6379 (and redis-0..2.redis.svc)"
}

stop_redis() {
  local script=$e2e_dir/scripts/redis-cluster.sh
  [[ -f $script ]] || return 0
  REDIS_CLUSTER_BIND=$node_ip REDIS_CLUSTER_PORT=$redis_base_port \
    REDIS_CLUSTER_DIR=$state_dir/redis bash "$script" stop >/dev/null 2>&1 || true
}

start_node_agent() {
  start_process node-agent "$cargo_target_dir/release/socketfleet-node" \
    --kubeconfig "$kubeconfig" \
    --node-name "$node_name" --node-ip "$node_ip" --bridge "$bridge" \
    --pod-ip-range "$subnet_prefix.10-$subnet_prefix.199" \
    --load-balancer-ip-range "$subnet_prefix.200-$subnet_prefix.250" \
    --state-dir "$state_dir/node" \
    --serving-cert "$pki_dir/node-agent-serving.crt" --serving-key "$pki_dir/node-agent-serving.key" \
    --client-ca-file "$pki_dir/ca.crt" \
    --image "gateway=$cargo_target_dir/release/socketfleet-gateway" \
    --image "operator=$cargo_target_dir/release/socketfleet-operator" \
    --image "e2e-echo=$cargo_target_dir/release/socketfleet-e2e-echo"
  wait_for "node $node_name to be Ready" 60 node-agent \
    "$kube_bin/kubectl" --kubeconfig "$kubeconfig" wait --for=condition=Ready "node/$node_name" --timeout=1s
}

# ---------------------------------------------------------------------------------------------------
# Commands

build() {
  etcd_bin=$(bash "$e2e_dir/scripts/build-control-plane.sh" etcd)
  kube_bin=$(bash "$e2e_dir/scripts/build-control-plane.sh" kubernetes)
  # The agent and the binaries it runs for pods: release builds, like the images they replace.
  # SOCKETFLEET_CARGO_BUILD=0 skips this step when they are already built.
  local package packages=()
  for package in ${SOCKETFLEET_CARGO_PACKAGES:-socketfleet-gateway socketfleet-operator socketfleet-e2e}; do
    packages+=(-p "$package")
  done
  if [[ ${SOCKETFLEET_CARGO_BUILD:-1} != 0 ]]; then
    (cd "$repo_dir" && cargo build --release -q "${packages[@]}" --bins)
  fi
  mkdir -p "$state_dir"
  # Other scripts and the tests find kubectl and etcd here.
  ln -sfn "$kube_bin" "$state_dir/kube-bin"
  ln -sfn "$etcd_bin" "$state_dir/etcd-bin"
}

up() {
  local started=$SECONDS
  down_quietly
  build
  mkdir -p "$log_dir"
  bash "$e2e_dir/scripts/pki.sh"
  network_up
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_redis
  start_node_agent
  publish_redis_services
  log "cluster up in $((SECONDS - started)) s; kubeconfig: $kubeconfig"
}

down() {
  # The agent stops its pods first (SIGTERM, grace period), then the control plane goes.
  stop_process node-agent 40
  stop_process kube-scheduler
  stop_process kube-controller-manager
  stop_process kube-apiserver
  stop_process etcd
  stop_redis
  network_down
  rm -rf "$state_dir/etcd" "$state_dir/node"
  log "cluster down"
}

down_quietly() { down 2>/dev/null; }

status() {
  local name
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler node-agent; do
    if process_alive "$name"; then echo "$name: running (pid $(<"$pid_dir/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
