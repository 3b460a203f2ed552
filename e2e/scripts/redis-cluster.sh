#!/usr/bin/env bash
# Starts, stops and reports a local Redis Cluster of Debian's redis-server: 3 masters and 3 replicas,
# one process per node, no persistence. The gateway's adapter tests and the local cluster both use it.
#
# Usage: redis-cluster.sh start|stop|status
#
# Settings, each an environment variable (or `--name value` after the command, e.g. `--port 7200`):
#   REDIS_CLUSTER_BIND      --bind      address every node listens on and announces (default 127.0.0.1)
#   REDIS_CLUSTER_PORT      --port      port of the first node; the nodes use PORT..PORT+5 and the
#                                       cluster bus PORT+10000.. (default 7100, away from Redis' 6379)
#   REDIS_CLUSTER_DIR       --dir       data folder; node N keeps nodes.conf, redis.pid and redis.log
#                                       in DIR/PORT+N (default e2e/.local/redis-cluster-PORT)
#   REDIS_CLUSTER_PASSWORD  --password  requirepass and masterauth of every node (default: none)
#   REDIS_CLUSTER_NODE_TIMEOUT --node-timeout  cluster-node-timeout in ms; a dead master's replica is
#                                       promoted about this long after the failure (default 2000)
#   REDIS_CLUSTER_WAIT      --wait      seconds `start` waits for cluster_state:ok (default 30)
#   REDIS_CLUSTER_OWNER_PID --owner-pid stop the cluster once this process exits (default: never)
#
# `start` stops a cluster left in the same folder first, so it is safe to call again; it prints
# `redis-cluster: ok <bind>:<port>..<port+5>` once every node reports cluster_state:ok and the three
# replicas are in sync with their masters (so a master can fail over from then on).
# `status` prints CLUSTER INFO and CLUSTER NODES of the first node that answers.
# `stop` ends the node processes by the pids in their pid files and waits for them to exit.
set -euo pipefail

command=${1:-}
shift || true

bind=${REDIS_CLUSTER_BIND:-127.0.0.1}
port=${REDIS_CLUSTER_PORT:-7100}
dir=${REDIS_CLUSTER_DIR:-}
password=${REDIS_CLUSTER_PASSWORD:-}
node_timeout=${REDIS_CLUSTER_NODE_TIMEOUT:-2000}
wait_seconds=${REDIS_CLUSTER_WAIT:-30}
owner_pid=${REDIS_CLUSTER_OWNER_PID:-}

while (($#)); do
  case $1 in
    --bind) bind=$2 ;;
    --port) port=$2 ;;
    --dir) dir=$2 ;;
    --password) password=$2 ;;
    --node-timeout) node_timeout=$2 ;;
    --wait) wait_seconds=$2 ;;
    --owner-pid) owner_pid=$2 ;;
    *) echo "redis-cluster: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done

e2e_dir=$(cd "$(dirname "$0")/.." && pwd)
dir=${dir:-$e2e_dir/.local/redis-cluster-$port}
node_ports=()
for i in 0 1 2 3 4 5; do node_ports+=($((port + i))); done

cli() {
  local node_port=$1
  shift
  if [[ -n $password ]]; then
    REDISCLI_AUTH=$password redis-cli -h "$bind" -p "$node_port" "$@"
  else
    redis-cli -h "$bind" -p "$node_port" "$@"
  fi
}

stop_nodes() {
  local pids=() pid_file pid
  for node_port in "${node_ports[@]}"; do
    pid_file=$dir/$node_port/redis.pid
    [[ -f $pid_file ]] || continue
    pid=$(cat "$pid_file")
    # Only end the process if it is still the redis-server this folder started.
    if [[ -n $pid ]] && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
    rm -f "$pid_file"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  return 0
}

start_node() {
  local node_port=$1 node_dir=$dir/$1
  mkdir -p "$node_dir"
  local args=(
    --port "$node_port" --bind "$bind" --cluster-announce-ip "$bind"
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$node_timeout"
    --dir "$node_dir" --pidfile "$node_dir/redis.pid" --logfile "$node_dir/redis.log"
    --daemonize yes --save "" --appendonly no
  )
  # The bridge address of the local cluster is not loopback, so protected mode would refuse clients.
  [[ $bind == 127.* ]] || args+=(--protected-mode no)
  [[ -z $password ]] || args+=(--requirepass "$password" --masterauth "$password")
  redis-server "${args[@]}"
}

replicas_in_sync() {
  local node_port count=0
  for node_port in "${node_ports[@]}"; do
    if cli "$node_port" info replication 2>/dev/null | grep -q '^master_link_status:up'; then
      count=$((count + 1))
    fi
  done
  echo "$count"
}

wait_cluster_ok() {
  local deadline=$((SECONDS + wait_seconds)) node_port all_ok
  while ((SECONDS < deadline)); do
    all_ok=1
    for node_port in "${node_ports[@]}"; do
      if ! cli "$node_port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
        all_ok=0
        break
      fi
    done
    # A replica can take over only once it is attached and synced, so wait for three of them.
    if ((all_ok)) && (($(replicas_in_sync) == 3)); then
      return 0
    fi
    sleep 0.2
  done
  echo "redis-cluster: timed out after ${wait_seconds}s waiting for cluster_state:ok and 3 synced replicas on $bind:$port..$((port + 5)); logs in $dir/*/redis.log" >&2
  return 1
}

case $command in
  start)
    command -v redis-server >/dev/null || { echo "redis-cluster: redis-server not found; run scripts/deps.sh" >&2; exit 1; }
    stop_nodes
    rm -rf "$dir"
    mkdir -p "$dir"
    for node_port in "${node_ports[@]}"; do start_node "$node_port"; done

    # A node accepts the create command only once it listens.
    for node_port in "${node_ports[@]}"; do
      for _ in $(seq 100); do
        cli "$node_port" ping >/dev/null 2>&1 && break
        sleep 0.05
      done
    done
    addresses=()
    for node_port in "${node_ports[@]}"; do addresses+=("$bind:$node_port"); done
    if ! cli "${node_ports[0]}" --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1; then
      echo "redis-cluster: cluster create failed, output in $dir/create.log:" >&2
      tail -20 "$dir/create.log" >&2
      stop_nodes
      exit 1
    fi
    wait_cluster_ok || { stop_nodes; exit 1; }

    if [[ -n $owner_pid ]]; then
      # Detached watcher: a test process that dies without cleaning up still stops its cluster.
      # It ends only the processes started here, so a later cluster in the same folder survives.
      started_pids=$(cat "$dir"/*/redis.pid | tr '\n' ' ')
      nohup bash -c "while kill -0 $owner_pid 2>/dev/null; do sleep 1; done
        for pid in $started_pids; do
          grep -q redis-server /proc/\$pid/cmdline 2>/dev/null && kill -TERM \$pid
        done" >/dev/null 2>&1 &
    fi
    echo "redis-cluster: ok $bind:$port..$((port + 5))"
    ;;
  stop)
    stop_nodes
    ;;
  status)
    for node_port in "${node_ports[@]}"; do
      if cli "$node_port" ping >/dev/null 2>&1; then
        cli "$node_port" cluster info
        cli "$node_port" cluster nodes
        exit 0
      fi
    done
    echo "redis-cluster: no node answers on $bind:$port..$((port + 5))" >&2
    exit 1
    ;;
  *)
    echo "usage: $0 start|stop|status [--bind ADDR] [--port PORT] [--dir DIR] [--password PW] [--node-timeout MS] [--wait S] [--owner-pid PID]" >&2
    exit 2
    ;;
esac
