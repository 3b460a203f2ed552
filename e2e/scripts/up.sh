#!/usr/bin/env bash
# `make up`: the local cluster with everything a person needs to try socketfleet: the control plane,
# the Redis Cluster, the operator installed by its Helm chart, and the minimal example applied, then
# the commands to go on with. `make down` (cluster.sh down) removes it all.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

demo_namespace=demo
release=socketfleet

bash "$e2e_dir/scripts/cluster.sh" up
kubectl=$state_dir/kube-bin/kubectl
helm=$(bash "$repo_dir/scripts/helm.sh" --print-path)
export KUBECONFIG=$kubeconfig

log "helm install $release charts/socketfleet-operator -n socketfleet-system"
"$helm" install "$release" "$repo_dir/charts/socketfleet-operator" -n socketfleet-system --create-namespace
wait_for "the operator Deployment to be available" 120 "" \
  "$kubectl" -n socketfleet-system wait --for=condition=Available deployment \
  -l "app.kubernetes.io/instance=$release" --timeout=1s

log "kubectl apply -f crds/examples/minimal.yaml -n $demo_namespace"
"$kubectl" create namespace "$demo_namespace" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
"$kubectl" -n "$demo_namespace" apply -f "$repo_dir/crds/examples/minimal.yaml"
wait_for "RealtimeNamespace chat to be Ready" 180 "" \
  "$kubectl" -n "$demo_namespace" wait --for=condition=Ready realtimenamespace/chat --timeout=1s

service_ip=$("$kubectl" -n "$demo_namespace" get service chat -o jsonpath='{.spec.clusterIP}')
cat <<MESSAGE

The local cluster is up. Try:

  export KUBECONFIG=$kubeconfig
  export PATH=$state_dir/kube-bin:\$PATH
  kubectl get nodes
  kubectl -n $demo_namespace get rtns          # PATH READY REPLICAS CONNECTIONS AGE
  kubectl -n $demo_namespace get pods -o wide  # each gateway pod has its own address on $bridge
  kubectl -n $demo_namespace scale rtns chat --replicas=3

Socket.IO clients reach the fleet at http://$service_ip:3000/chat (the Service's cluster IP, which
this machine routes like a node would). Give the Service a load balancer address with:

  kubectl -n $demo_namespace patch rtns chat --type merge -p '{"spec":{"service":{"type":"LoadBalancer"}}}'
  kubectl -n $demo_namespace get service chat  # EXTERNAL-IP

Logs: $log_dir (control plane, node agent) and $state_dir/node/pods/*/ (containers).
Stop everything with: make down
MESSAGE
