//! Container processes: each runs as `ip netns exec NETNS unshare --mount … BINARY ARGS`, so it sees
//! only the pod's network and, in a private mount namespace, the pod's volumes bind-mounted at their
//! mount paths. Every step `exec`s the next, so the child's PID is the binary's own.
//!
//! `ip netns exec` also bind-mounts the files in `/etc/netns/NETNS/` over `/etc`, which is how a pod
//! gets its own `/etc/hosts` with Service names.

use std::path::Path;
use std::process::Stdio;

use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};

use super::volumes::Mount;
use super::{Error, Result};

/// PATH for container processes that do not set their own.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Takes SOURCE TARGET ro|rw triples up to `--`, bind-mounts each inside the private mount namespace,
/// then replaces itself with the container binary and its arguments.
///
/// Every source is opened before the first mount and mounted through its `/proc/self/fd` link, so a
/// mount over a folder that contains later sources (an emptyDir at `/tmp` while the node's pod folders live
/// under `/tmp`) cannot hide them. `--no-canonicalize` keeps mount(8) from turning that link back into
/// the path that is hidden by then.
///
/// NOTE: a mount point that does not exist is created (an empty folder, or an empty file for a subPath
/// file), and it stays on the host's filesystem, because only mounts are private here, not files.
const MOUNT_AND_EXEC: &str = r#"
set -e
sources=()
for ((i = 1; i <= $#; i += 3)); do
  [ "${!i}" = "--" ] && break
  exec {fd}<"${!i}"
  sources+=("$fd")
done
for fd in "${sources[@]}"; do
  if [ -d "$1" ]; then
    mkdir -p "$2"
  else
    mkdir -p "$(dirname "$2")"
    [ -e "$2" ] || : >"$2"
  fi
  mount --no-canonicalize --bind "/proc/self/fd/$fd" "$2"
  if [ "$3" = ro ]; then mount --no-canonicalize -o remount,bind,ro "$2"; fi
  exec {fd}<&-
  shift 3
done
shift
exec "$@"
"#;

/// What to start for one container.
pub struct Launch<'a> {
    pub netns: &'a str,
    pub binary: &'a Path,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub mounts: &'a [Mount],
    pub working_dir: &'a Path,
    pub log_file: &'a Path,
}

/// Starts the container process with stdout and stderr appended to the log file.
pub fn spawn(launch: &Launch<'_>) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.log_file)
        .map_err(|source| Error::Io {
            path: launch.log_file.display().to_string(),
            source,
        })?;
    let log_copy = log.try_clone().map_err(|source| Error::Io {
        path: launch.log_file.display().to_string(),
        source,
    })?;

    let mut command = Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            launch.netns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
        ])
        .args(["bash", "-c", MOUNT_AND_EXEC, "bash"]);
    for mount in launch.mounts {
        command
            .arg(&mount.source)
            .arg(&mount.target)
            .arg(if mount.read_only { "ro" } else { "rw" });
    }
    command
        .arg("--")
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
