//! Locating the cargo target directory and the e2e cache inside it.

use std::path::PathBuf;

/// The cargo target directory: `CARGO_TARGET_DIR` if set, else derived from
/// the running test executable (`target/<profile>/deps/<exe>`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return dir;
        }
    }
    profile_dir()
        .parent()
        .expect("profile dir has a parent (the target dir)")
        .to_path_buf()
}

/// `target/<profile>`: the directory holding the workspace binaries
/// (`warren`) for the profile the tests were built with.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe() must be known");
    let deps = exe.parent().expect("test executable has a parent dir");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps dir has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// `target/e2e-cache`, created if missing.
pub fn cache_dir() -> PathBuf {
    let dir = target_dir().join("e2e-cache");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create cache dir {}: {e}", dir.display()));
    dir
}
