//! The VDE2 handshake: `parse_request` on the bytes a client sends on the control connection, then
//! the path check warren applies to the data socket it names, and `decode_sockaddr`.
//!
//! Checked: an accepted request names a non-empty path without NUL that fits `sun_path`, its
//! description is printable and bounded, and it survives `encode_request` → `parse_request`; a path
//! the check accepts is absolute, in the switch directory or a libvdeplug fallback, with no `.`,
//! `..` or empty components.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use vde_switch::vde::{self, PortRequest};

fuzz_target!(|data: &[u8]| {
    let _ = vde::decode_sockaddr(data);
    let dir = Path::new("/run/user/1000/warren.vde");
    match vde::parse_request(data) {
        Ok(r) => {
            assert!(!r.path.is_empty() && r.path.len() < vde::SUN_LEN - 2);
            assert!(!r.path.contains(&0));
            assert!(r.description.len() <= vde::MAX_DESCR);
            assert!(r.description.bytes().all(|b| (0x20..0x7f).contains(&b)));
            let port = match r.port {
                PortRequest::Any => Some(0),
                PortRequest::Number(n) => Some(n),
                PortRequest::Port0 => None,
            };
            if let Some(p) = port.filter(|p| *p < 1 << 23) {
                let again = vde::parse_request(&vde::encode_request(p, &r.path, &r.description))
                    .expect("an encoded request parses");
                assert_eq!(again, r);
            }
            if vde::check_path(&r.path, dir).is_ok() {
                assert_acceptable(&r.path, dir);
            }
        }
        Err(e) => {
            let s = e.to_string();
            assert!(!s.contains('\n'), "multi-line error {s:?}");
        }
    }
    // The path check on its own, on any bytes.
    if vde::check_path(data, dir).is_ok() {
        assert_acceptable(data, dir);
    }
});

fn assert_acceptable(path: &[u8], dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let rest = path.strip_prefix(b"/").expect("absolute");
    assert!(rest
        .split(|&c| c == b'/')
        .all(|c| !c.is_empty() && c != b"." && c != b".."));
    let in_dir = path
        .strip_prefix(dir.as_os_str().as_bytes())
        .and_then(|n| n.strip_prefix(b"/"))
        .is_some_and(|n| !n.is_empty() && !n.contains(&b'/'));
    let fallback = ["/var/run/vde.", "/var/tmp/vde.", "/tmp/vde."]
        .iter()
        .any(|p| {
            path.strip_prefix(p.as_bytes())
                .is_some_and(|n| !n.is_empty() && !n.contains(&b'/'))
        });
    assert!(
        in_dir || fallback,
        "accepted {:?}",
        String::from_utf8_lossy(path)
    );
}
