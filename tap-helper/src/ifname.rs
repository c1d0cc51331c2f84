//! Interface names exactly as the kernel uses them.
//!
//! QEMU's helper once checked a long bridge name against the ACL in full and then let the
//! ioctl truncate it to 15 bytes (an ACL bypass, fixed in 2019).  Here a name is validated
//! once, with the kernel's own rules (`dev_valid_name()`), and the very same bytes are used
//! for the ACL comparison, the netlink lookup and every ioctl: nothing is ever truncated.

use std::fmt;

/// `IFNAMSIZ` including the terminating NUL.
pub const IFNAMSIZ: usize = 16;

/// A valid Linux interface name: 1..=15 bytes, not `.` or `..`, no `/`, `:`, NUL or
/// whitespace (the kernel's `dev_valid_name()` plus NUL).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IfName(Vec<u8>);

/// Why a string is not an interface name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfNameError {
    Empty,
    TooLong(usize),
    Dots,
    BadByte(u8),
}

impl fmt::Display for IfNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfNameError::Empty => write!(f, "empty interface name"),
            IfNameError::TooLong(n) => {
                write!(
                    f,
                    "interface name is {n} bytes, the kernel allows at most 15"
                )
            }
            IfNameError::Dots => write!(f, "`.` and `..` are not interface names"),
            IfNameError::BadByte(b) => write!(
                f,
                "interface name contains byte {:?}, which the kernel refuses",
                char::from(*b)
            ),
        }
    }
}

impl IfName {
    pub fn new(bytes: &[u8]) -> Result<IfName, IfNameError> {
        if bytes.is_empty() {
            return Err(IfNameError::Empty);
        }
        if bytes.len() >= IFNAMSIZ {
            return Err(IfNameError::TooLong(bytes.len()));
        }
        if bytes == b"." || bytes == b".." {
            return Err(IfNameError::Dots);
        }
        if let Some(&b) = bytes
            .iter()
            .find(|&&b| b == b'/' || b == b':' || b == 0 || is_c_space(b))
        {
            return Err(IfNameError::BadByte(b));
        }
        Ok(IfName(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name as a NUL-padded `ifr_name`.
    pub fn to_ifr_name(&self) -> [u8; IFNAMSIZ] {
        let mut out = [0u8; IFNAMSIZ];
        out[..self.0.len()].copy_from_slice(&self.0);
        out
    }
}

/// C `isspace()` in the C locale (what both QEMU and the kernel use).
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_ascii())
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IfName(\"{}\")", self.0.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kernel_names() {
        for n in [
            &b"br0"[..],
            b"a",
            b"123456789012345",
            b"br-lan.10",
            b"x;y",
            b"\xff",
        ] {
            assert!(IfName::new(n).is_ok(), "{:?}", n.escape_ascii().to_string());
        }
    }

    #[test]
    fn rejects_what_the_kernel_rejects() {
        assert_eq!(IfName::new(b""), Err(IfNameError::Empty));
        assert_eq!(
            IfName::new(b"1234567890123456"),
            Err(IfNameError::TooLong(16))
        );
        assert_eq!(IfName::new(b"."), Err(IfNameError::Dots));
        assert_eq!(IfName::new(b".."), Err(IfNameError::Dots));
        assert_eq!(IfName::new(b"a/b"), Err(IfNameError::BadByte(b'/')));
        assert_eq!(IfName::new(b"a:b"), Err(IfNameError::BadByte(b':')));
        assert_eq!(IfName::new(b"a b"), Err(IfNameError::BadByte(b' ')));
        assert_eq!(IfName::new(b"a\0"), Err(IfNameError::BadByte(0)));
    }

    #[test]
    fn ifr_name_is_nul_terminated() {
        let n = IfName::new(b"123456789012345").expect("valid");
        let r = n.to_ifr_name();
        assert_eq!(&r[..15], b"123456789012345");
        assert_eq!(r[15], 0);
    }
}
