//! Fills the page cache with the database file in single pages before SQLite reads it.
//!
//! Why: the writer's checkpoints write random 4 KiB pages into the database file. On Linux
//! 6.16+ ext4 caches a file in large folios (up to 2 MiB) when it is read sequentially with
//! readahead: the start-up scan of `devices` (`read::rebuild_fleet`), a restored backup, a
//! copied file. Every 4 KiB write into such a folio then walks all of its block buffers,
//! in the write and again in the writeback: about 70 % more kernel time per page measured
//! here (`docs/performance.md`, "Where the rest of the CPU goes"), paid by the checkpointer
//! on the cores the writer needs. Pages read with `POSIX_FADV_RANDOM` on the reading file are
//! cached as single pages, however large the read.
//!
//! Invariants: advice only, never needed for correctness. Every failure is logged and
//! ignored; the file is only read (`O_RDONLY`), and cached pages that are dirty are left
//! alone by the kernel. Only clean cached pages of this file are dropped, then read again
//! in 1 MiB reads, so start-up pays one sequential read of the file (4.6 s for the 2.6 GB of
//! 1M devices on the 2-core VM). A file larger than half the available memory is left alone:
//! the cache could not hold it, and the read would only evict other pages.

use std::path::Path;

/// Drops the file's clean cached pages and reads it again as single pages. Returns the
/// bytes read; 0 when the file does not exist yet (a new database), is larger than half the
/// available memory, or off Linux.
pub(crate) fn recache(path: &Path) -> u64 {
    match imp(path) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(db = %path.display(), error = %e, "could not re-cache the database file; writes may cost more kernel time");
            0
        }
    }
}

#[cfg(target_os = "linux")]
fn imp(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    use std::os::fd::AsRawFd;

    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if let Some(available) = mem_available()
        && len > available / 2
    {
        tracing::info!(db = %path.display(), bytes = len, available, "database file larger than half the available memory: not re-cached");
        return Ok(0);
    }
    let fd = file.as_raw_fd();
    for advice in [libc::POSIX_FADV_DONTNEED, libc::POSIX_FADV_RANDOM] {
        // SAFETY: `fd` is open for the whole call; posix_fadvise reads no memory of ours.
        let rc = unsafe { libc::posix_fadvise(fd, 0, 0, advice) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
#[cfg(target_os = "linux")]
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(not(target_os = "linux"))]
fn imp(_path: &Path) -> std::io::Result<u64> {
    Ok(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_the_whole_file_back_and_leaves_it_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        // Not a multiple of the 1 MiB read: the last read is short.
        let bytes: Vec<u8> = (0..(3 << 20) + 12_345).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(recache(&path), bytes.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_missing_file_is_a_new_database() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recache(&dir.path().join("none.db")), 0);
        assert!(mem_available().is_some_and(|b| b > 0));
    }
}
