//! Container processes: each runs as `ip netns exec NETNS unshare --mount … BINARY ARGS`, so it sees
//! only the pod's network and, in a private mount namespace, the pod's token folder bind-mounted at
//! the standard path. Every step `exec`s the next, so the child's PID is the binary's own.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};

use super::{Error, Result};

/// Where a pod expects its service-account token, as on any Kubernetes node.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// PATH for container processes that do not set their own.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Bind-mounts the token folder ($1, when given) read-only at the standard path inside the private
/// mount namespace, then replaces itself with the container binary.
const MOUNT_AND_EXEC: &str = r#"
set -e
if [ -n "$1" ]; then
  mount --bind "$1" /var/run/secrets/kubernetes.io/serviceaccount
  mount -o remount,bind,ro /var/run/secrets/kubernetes.io/serviceaccount
fi
shift
exec "$@"
"#;

/// Creates the (empty) mount point on the host. A bind mount needs an existing folder, and the
/// mounts themselves happen only inside each pod's private mount namespace.
pub async fn prepare_token_mount_point() -> Result<()> {
    tokio::fs::create_dir_all(TOKEN_MOUNT_PATH)
        .await
        .map_err(|source| Error::Io { path: TOKEN_MOUNT_PATH.to_owned(), source })
}

/// What to start for one container.
pub struct Launch<'a> {
    pub netns: &'a str,
    pub binary: &'a Path,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub token_folder: Option<&'a Path>,
    pub working_dir: &'a Path,
    pub log_file: &'a Path,
}

/// Starts the container process with stdout and stderr appended to the log file.
pub fn spawn(launch: &Launch<'_>) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.log_file)
        .map_err(|source| Error::Io { path: launch.log_file.display().to_string(), source })?;
    let log_copy = log
        .try_clone()
        .map_err(|source| Error::Io { path: launch.log_file.display().to_string(), source })?;
    let token_folder: PathBuf = launch.token_folder.map(Path::to_path_buf).unwrap_or_default();

    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", launch.netns, "unshare", "--mount", "--propagation", "private", "--"])
        .args(["sh", "-c", MOUNT_AND_EXEC, "sh"])
        .arg(&token_folder)
        .arg(launch.binary)
        .args(launch.args)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(launch.env.iter().map(|(name, value)| (name.as_str(), value.as_str())))
        .current_dir(launch.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_copy))
        .kill_on_drop(true);
    command.spawn().map_err(|error| Error::Command {
        command: format!("ip netns exec {} {}", launch.netns, launch.binary.display()),
        message: error.to_string(),
    })
}

/// Sends `signal` to the process; a process that already exited is not an error.
pub fn signal(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| Pid::from_raw(id as i32)) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}
