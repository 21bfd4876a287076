//! The node's hostname, from the kernel (`/proc/sys/kernel/hostname`), with
//! `/etc/hostname` as a fallback for trees without procfs.

use super::Sources;
use crate::Result;

pub fn collect(src: &Sources) -> Result<String> {
    let (_, text) = match src.read("/proc/sys/kernel/hostname") {
        Ok(found) => found,
        Err(first) => src.read("/etc/hostname").map_err(|_| first)?,
    };
    Ok(text.trim().to_owned())
}
