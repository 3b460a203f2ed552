# Shared settings and helpers for the local cluster scripts; sourced, never run.
#
# Every address lives on one bridge that these scripts create. The bridge's own address plays the
# node IP: the API server and Redis listen there, and pods reach them through their veth.

e2e_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo_dir=$(cd "$e2e_dir/.." && pwd)
state_dir=${SOCKETFLEET_STATE_DIR:-$e2e_dir/.local}
log_dir=$state_dir/logs
pid_dir=$state_dir/pids
pki_dir=$state_dir/pki
kubeconfig=$state_dir/kubeconfig

# 10.244.0.0/24 is the pod range kubeadm-style clusters use; the scripts check that no route on this
# machine covers it before creating the bridge.
bridge=${SOCKETFLEET_BRIDGE:-sfbr0}
subnet_prefix=${SOCKETFLEET_SUBNET_PREFIX:-10.244.0}
node_ip=$subnet_prefix.1
subnet=$subnet_prefix.0/24
node_name=${SOCKETFLEET_NODE_NAME:-socketfleet-local}
# Network namespaces and host-side veths that the node agent creates start with these prefixes, so
# tear-down can find what a crashed agent left behind.
netns_prefix=sfpod-
veth_prefix=sfv

apiserver_port=6443
etcd_client_port=12379
etcd_peer_port=12380
controller_manager_port=10257
scheduler_port=10259
redis_base_port=${SOCKETFLEET_REDIS_BASE_PORT:-7300}
# Service cluster IPs are only names here (nothing routes them); the range must not overlap the bridge.
service_cidr=10.96.0.0/24
service_first_ip=10.96.0.1

cargo_target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/socketfleet/target}

log() { echo "cluster: $*" >&2; }
die() {
  echo "cluster: error: $*" >&2
  exit 1
}

# Starts a long-running process in its own session with output in $log_dir/NAME.log and its PID in
# $pid_dir/NAME.pid.
start_process() {
  local name=$1
  shift
  mkdir -p "$log_dir" "$pid_dir"
  setsid "$@" >"$log_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$pid_dir/$name.pid"
  log "started $name (pid $!, log $log_dir/$name.log)"
}

# Stops a process started by start_process: SIGTERM, up to GRACE seconds (default 10), then SIGKILL.
stop_process() {
  local name=$1 grace=${2:-10} pid_file=$pid_dir/$1.pid pid
  [[ -f $pid_file ]] || return 0
  pid=$(<"$pid_file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((grace * 10))); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) did not stop within ${grace}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pid_file"
}

# True while the process NAME started by start_process is alive.
process_alive() {
  local pid_file=$pid_dir/$1.pid
  [[ -f $pid_file ]] && kill -0 "$(<"$pid_file")" 2>/dev/null
}

# Runs CHECK (a command) every half second until it succeeds or TIMEOUT seconds pass; WHAT names the
# wait in the error. Fails early when the process NAME (optional) has died.
wait_for() {
  local what=$1 timeout=$2 name=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $name ]] && ! process_alive "$name"; then
      tail -n 30 "$log_dir/$name.log" >&2 || true
      die "$name exited while waiting for $what (log: $log_dir/$name.log)"
    fi
    if ((SECONDS >= deadline)); then
      [[ -n $name ]] && tail -n 30 "$log_dir/$name.log" >&2
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 0.5
  done
}
