//! Size and free space of the filesystem holding the root path, via sysinfo's
//! mount list (statvfs underneath). With a fake root in tests this is the
//! filesystem holding the fake tree.

use std::path::{Path, PathBuf};

use sysinfo::{DiskRefreshKind, Disks};

use crate::report::Filesystem;
use crate::{Error, Result};

pub fn collect(path: &Path) -> Result<Filesystem> {
    let disks = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
        .map_err(Error::ListDisksFailed)?;
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = disks
        .iter()
        .map(|d| (d.mount_point(), d.total_space(), d.available_space()));
    pick(mounts, &path).ok_or_else(|| Error::RootFsNotFound {
        path: PathBuf::from(&path),
    })
}

/// The mount with the longest mount point that contains `path`.
pub fn pick<'a>(
    mounts: impl IntoIterator<Item = (&'a Path, u64, u64)>,
    path: &Path,
) -> Option<Filesystem> {
    mounts
        .into_iter()
        .filter(|(mp, _, _)| path.starts_with(mp))
        .max_by_key(|(mp, _, _)| mp.components().count())
        .map(|(mp, total, avail)| Filesystem {
            mount_point: mp.display().to_string(),
            total_bytes: total,
            available_bytes: avail,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepest_mount_containing_the_path_wins() {
        let mounts = [
            (Path::new("/"), 100, 50),
            (Path::new("/boot/firmware"), 10, 5),
            (Path::new("/var/lib/rancher"), 1000, 900),
        ];
        let fs = pick(mounts, Path::new("/var/lib/rancher/k3s")).expect("found");
        assert_eq!(fs.mount_point, "/var/lib/rancher");
        assert_eq!(pick(mounts, Path::new("/")).expect("root").total_bytes, 100);
        assert_eq!(
            pick(mounts, Path::new("/var/lib/ranch"))
                .expect("root")
                .mount_point,
            "/"
        );
    }

    #[test]
    fn real_root_filesystem_has_a_size() {
        let fs = collect(Path::new("/")).expect("/ is mounted");
        assert!(
            fs.total_bytes > 0 && fs.available_bytes <= fs.total_bytes,
            "{fs:?}"
        );
    }
}
