//! socketfleet's local cluster: the parts that stand in for a kubelet and a cloud load balancer, so the
//! whole system runs on one machine with a real API server, scheduler and controller manager.
//!
//! - [`node`] is the node agent (binary `socketfleet-node`). It registers a Node, runs the pods the
//!   scheduler binds to it as local processes, each in its own network namespace on a bridge, reports
//!   their status, and serves each LoadBalancer Service with a round-robin TCP forwarder.
//! - The scripts in `e2e/scripts` build the control plane from pinned Go modules and start it;
//!   `tests/` drive the system end to end through `kubectl`, `helm` and socket.io clients.

pub mod node;
