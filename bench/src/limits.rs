//! Open-file limit handling. The hard limit on this kind of machine cannot be raised, so the harness
//! raises the soft limit up to the hard one, and every process it starts inherits that.

use rustix::process::{Resource, getrlimit, setrlimit};

/// Raises the soft open-files limit to the hard limit and returns the new soft limit.
pub fn raise_open_files_limit() -> anyhow::Result<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)?;
    }
    Ok(limit.current.unwrap_or(u64::MAX))
}
