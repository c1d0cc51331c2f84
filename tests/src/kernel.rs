//! Fetching and caching Debian bookworm's kernel and the modules virtio-net
//! needs.
//!
//! The package (`linux-image-6.1.0-NN-amd64`, NN resolved through
//! `apt-cache depends linux-image-amd64`) is fetched with `apt-get download`
//! and unpacked with `dpkg-deb -x` into `target/e2e-cache/kernel/`; it is
//! never installed into the running system. Only vmlinuz and the needed
//! modules are kept. The cache is rebuilt automatically when missing.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::run_checked;

/// Modules the guest must have for a virtio-net NIC on the PCI bus. Their
/// dependencies are resolved from the modules' own `depends=` info.
pub const WANTED_MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// A cached guest kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// Loadable modules, in `insmod` order (dependencies first).
    pub modules: Vec<PathBuf>,
}

/// The kernel, fetched and unpacked on first use (once per process; a file
/// lock serialises concurrent test processes).
pub fn kernel() -> &'static Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    K.get_or_init(|| {
        let root = crate::paths::cache_dir().join("kernel");
        fs::create_dir_all(&root).expect("create kernel cache dir");
        let _lock = FileLock::acquire(&root.join(".lock"));
        let pkg = resolve_package();
        let dir = root.join(&pkg);
        if let Some(k) = read_manifest(&dir) {
            return k;
        }
        populate(&root, &pkg, &dir);
        read_manifest(&dir).unwrap_or_else(|| {
            panic!(
                "kernel cache {} incomplete right after building it",
                dir.display()
            )
        })
    })
}

/// `linux-image-6.1.0-NN-amd64`, from `apt-cache depends linux-image-amd64`.
/// `WARREN_E2E_KERNEL_PKG` overrides it.
fn resolve_package() -> String {
    if let Ok(p) = std::env::var("WARREN_E2E_KERNEL_PKG") {
        return p;
    }
    let out = run_checked(Command::new("apt-cache").args(["depends", "linux-image-amd64"]));
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|d| d.starts_with("linux-image-") && d.ends_with("-amd64"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "`apt-cache depends linux-image-amd64` names no linux-image-*-amd64 \
                 (run `apt-get update` first?). Output:\n{out}"
            )
        })
}

fn read_manifest(dir: &Path) -> Option<Kernel> {
    let text = fs::read_to_string(dir.join("manifest")).ok()?;
    let mut vmlinuz = None;
    let mut modules = Vec::new();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("vmlinuz", f)) => vmlinuz = Some(dir.join(f)),
            Some(("module", f)) => modules.push(dir.join(f)),
            _ => return None,
        }
    }
    let k = Kernel {
        vmlinuz: vmlinuz?,
        modules,
    };
    (k.vmlinuz.is_file() && k.modules.iter().all(|m| m.is_file())).then_some(k)
}

fn populate(root: &Path, pkg: &str, dir: &Path) {
    let work = tempfile::Builder::new()
        .prefix("fetch-")
        .tempdir_in(root)
        .expect("temp dir for kernel download");
    // `_apt` must be able to write where apt-get download saves the file.
    let _ = fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    );
    run_checked(
        Command::new("apt-get")
            .args(["download", "-q", pkg])
            .current_dir(work.path()),
    );
    let deb = fs::read_dir(work.path())
        .expect("read download dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("apt-get download {pkg} produced no .deb"));
    let x = work.path().join("x");
    run_checked(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));

    let boot = x.join("boot");
    let vmlinuz =
        find_prefixed(&boot, "vmlinuz-").unwrap_or_else(|| panic!("{pkg} has no boot/vmlinuz-*"));
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .expect("vmlinuz name")
        .to_owned();
    let moddir = x.join("lib/modules").join(&release);
    let builtin = builtin_modules(&moddir);
    let available = index_modules(&moddir.join("kernel"));
    let order = resolve_order(WANTED_MODULES, &builtin, &available);

    let stage = work.path().join("stage");
    fs::create_dir_all(&stage).expect("stage dir");
    let mut manifest = String::new();
    fs::copy(&vmlinuz, stage.join("vmlinuz")).expect("copy vmlinuz");
    manifest.push_str("vmlinuz vmlinuz\n");
    for name in &order {
        let src = &available[name];
        let file = format!("{name}.ko");
        fs::copy(src, stage.join(&file)).expect("copy module");
        manifest.push_str(&format!("module {file}\n"));
    }
    fs::write(stage.join("manifest"), manifest).expect("write manifest");
    let _ = fs::remove_dir_all(dir);
    fs::rename(&stage, dir).expect("move kernel cache into place");
}

fn find_prefixed(dir: &Path, prefix: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
}

/// Module names (with `-` normalised to `_`) listed in `modules.builtin`.
fn builtin_modules(moddir: &Path) -> HashSet<String> {
    let text = fs::read_to_string(moddir.join("modules.builtin"))
        .unwrap_or_else(|e| panic!("{}/modules.builtin unreadable: {e}", moddir.display()));
    text.lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|f| f.trim_end_matches(".ko").replace('-', "_"))
        .collect()
}

/// All `*.ko` files below `dir`, by module name.
fn index_modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                if let Some(stem) = n.strip_suffix(".ko") {
                    out.insert(stem.replace('-', "_"), p.clone());
                } else if n.ends_with(".ko.xz") || n.ends_with(".ko.zst") {
                    panic!("compressed module {n}: the harness expects plain .ko files");
                }
            }
        }
    }
    out
}

/// Dependencies-first order of the loadable modules needed for `wanted`.
fn resolve_order(
    wanted: &[&str],
    builtin: &HashSet<String>,
    available: &BTreeMap<String, PathBuf>,
) -> Vec<String> {
    fn visit(
        name: &str,
        builtin: &HashSet<String>,
        available: &BTreeMap<String, PathBuf>,
        order: &mut Vec<String>,
        seen: &mut HashSet<String>,
    ) {
        if builtin.contains(name) || !seen.insert(name.to_owned()) {
            return;
        }
        let path = available
            .get(name)
            .unwrap_or_else(|| panic!("module {name} is neither built in nor shipped"));
        let deps = run_checked(Command::new("modinfo").args(["-F", "depends"]).arg(path));
        for dep in deps.trim().split(',').filter(|d| !d.is_empty()) {
            visit(&dep.replace('-', "_"), builtin, available, order, seen);
        }
        order.push(name.to_owned());
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for w in wanted {
        visit(w, builtin, available, &mut order, &mut seen);
    }
    order
}

/// An exclusive `flock` held until drop.
pub(crate) struct FileLock(fs::File);

impl FileLock {
    pub(crate) fn acquire(path: &Path) -> Self {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open lock file {}: {e}", path.display()));
        let rc = rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive);
        assert!(rc.is_ok(), "flock {}: {rc:?}", path.display());
        FileLock(f)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}
