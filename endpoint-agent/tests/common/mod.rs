//! Fixture access shared by the integration tests (each test binary includes what it uses).
#![allow(dead_code)]

/// The directory of the dsregcmd captures.
pub fn dsregcmd_dir() -> String {
    format!("{}/testdata/dsregcmd", env!("CARGO_MANIFEST_DIR"))
}

/// The bytes of one dsregcmd capture.
pub fn dsregcmd(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}", dsregcmd_dir());
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Every dsregcmd capture's file name, sorted.
pub fn dsregcmd_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dsregcmd_dir())
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {}", dsregcmd_dir());
    names
}
