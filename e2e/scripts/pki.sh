#!/usr/bin/env bash
# Generates the local cluster's certificates and keys into $state_dir/pki with the openssl CLI and
# writes the admin kubeconfig. The openssl CLI is on every Debian machine and needs no build step, and
# each certificate is a few readable lines here instead of a generator program to maintain.
#
# One CA signs everything: the API server's serving certificate and one client certificate per
# component. RBAC maps each client certificate's CN to a user and O to a group (system:masters for the
# admin, the built-in system:kube-* users for the controller manager and the scheduler). The
# service-account key pair signs and verifies pod tokens.
#
# Existing files are kept, so restarting the cluster keeps the kubeconfig a person already uses.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mkdir -p "$pki_dir"
cd "$pki_dir"
umask 077

# Certificates stay valid for 30 days: the PKI lives as long as e2e/.local and `make down` keeps it.
days=30

if [[ ! -f ca.crt ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days "$days" \
    -subj "/CN=socketfleet-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

# Issues NAME.crt/NAME.key for SUBJECT with the given extended key usage and optional subjectAltName.
issue() {
  local name=$1 subject=$2 usage=$3 san=${4:-}
  [[ -f $name.crt ]] && return 0
  local ext=$name.ext
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } >"$ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$ext"
}

issue apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$node_ip,IP:127.0.0.1,IP:$service_first_ip"
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
issue admin "/O=system:masters/CN=socketfleet-admin" clientAuth
issue controller-manager "/CN=system:kube-controller-manager" clientAuth
issue scheduler "/CN=system:kube-scheduler" clientAuth
# The node agent serves container logs to the API server on port 10250, as a kubelet does.
issue node-agent-serving "/CN=$node_name" serverAuth "IP:$node_ip,DNS:$node_name"

if [[ ! -f sa.key ]]; then
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
fi

# Writes a kubeconfig for one client certificate, with the CA and the key embedded so the file works
# on its own (it is what `make up` hands to a person).
write_kubeconfig() {
  local file=$1 user=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: socketfleet-local
  cluster:
    server: https://$node_ip:$apiserver_port
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$user.crt")
    client-key-data: $(base64 -w0 "$user.key")
contexts:
- name: socketfleet-local
  context:
    cluster: socketfleet-local
    user: $user
current-context: socketfleet-local
EOF
}

write_kubeconfig "$kubeconfig" admin
write_kubeconfig controller-manager.kubeconfig controller-manager
write_kubeconfig scheduler.kubeconfig scheduler
