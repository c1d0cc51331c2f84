//! Files and directories removed when warren stops, through descriptors of their directories opened
//! when they were registered (so that removal works from inside the sandbox's empty root).

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The parent directory of `p` (`.` for a bare name).
pub fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)`.
pub fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode as FileMode, OFlags};
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        FileMode::empty(),
    )
    .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", dir.display())))
}

/// A file (or empty directory) removed at exit through a descriptor of its directory, opened when it
/// was registered: removal then works from inside the sandbox's empty root as well (Landlock's
/// remove rights still apply: they are bound to the directory, not to its path).
#[derive(Debug)]
pub struct AtExit {
    path: PathBuf,
    at: Option<(OwnedFd, OsString)>,
}

impl AtExit {
    /// Opens the directory of `path` (`O_PATH`); if that fails, removal falls back to the path.
    pub fn new(path: PathBuf) -> AtExit {
        let at = path.file_name().map(OsString::from).and_then(|name| {
            let dir = open_dir(&parent(&path)).ok()?;
            Some((dir, name))
        });
        AtExit { path, at }
    }

    /// Removes the file (`dir`: the empty directory); errors (already gone, not empty) are ignored.
    pub fn remove(&self, dir: bool) {
        match &self.at {
            Some((fd, name)) => {
                let flags = if dir {
                    rustix::fs::AtFlags::REMOVEDIR
                } else {
                    rustix::fs::AtFlags::empty()
                };
                let _ = rustix::fs::unlinkat(fd, name.as_os_str(), flags);
            }
            None if dir => {
                let _ = std::fs::remove_dir(&self.path);
            }
            None => {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// What to remove at exit: files first, then (empty) directories.
#[derive(Debug, Default)]
pub struct AtExitList {
    files: Vec<AtExit>,
    dirs: Vec<AtExit>,
}

impl AtExitList {
    /// Removes file `path` at exit.
    pub fn file(&mut self, path: PathBuf) {
        if crate::activation::is_inherited(&path) {
            return; // the service manager's socket stays
        }
        self.files.push(AtExit::new(path));
    }

    /// Removes directory `path` at exit, if it is empty then.
    pub fn dir(&mut self, path: PathBuf) {
        self.dirs.push(AtExit::new(path));
    }

    /// Removes everything registered.
    pub fn remove_all(&self) {
        for f in &self.files {
            f.remove(false);
        }
        for d in &self.dirs {
            d.remove(true);
        }
    }
}
