//! A minimal writer for the `newc` cpio format the Linux kernel unpacks as an
//! initramfs (uncompressed; the kernel accepts that as well as gzip).

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Builds a newc archive in memory.
#[derive(Default)]
pub struct Archive {
    buf: Vec<u8>,
    ino: u32,
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (parents must be added first).
    pub fn dir(&mut self, path: &str, perm: u32) -> &mut Self {
        self.entry(path, S_IFDIR | perm, 0, &[])
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.entry(path, S_IFREG | perm, 0, data)
    }

    /// Adds a symlink `path` -> `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(path, S_IFLNK | 0o777, 0, target.as_bytes())
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> &mut Self {
        self.entry(path, S_IFCHR | perm, (major << 16) | minor, &[])
    }

    /// Finishes the archive (trailer) and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 0, &[]);
        self.buf
    }

    /// Writes the finished archive to `w`.
    pub fn write_to(self, mut w: impl Write) -> io::Result<()> {
        w.write_all(&self.finish())
    }

    fn entry(&mut self, path: &str, mode: u32, rdev: u32, data: &[u8]) -> &mut Self {
        let name = path.trim_start_matches('/');
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & S_IFDIR == S_IFDIR { 2 } else { 1 },
            0, // mtime
            u32::try_from(data.len()).expect("cpio member larger than 4 GiB"),
            0, // devmajor
            0, // devminor
            rdev >> 16,
            rdev & 0xffff,
            u32::try_from(name.len() + 1).expect("name length"),
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while self.buf.len() & 3 != 0 {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_newc() {
        let mut a = Archive::new();
        a.file("/init", 0o755, b"hello");
        let bytes = a.finish();
        assert_eq!(&bytes[..6], b"070701");
        // 6 magic + 13 * 8 header = 110, then "init\0" padded to 4.
        assert_eq!(&bytes[110..115], b"init\0");
        let size = std::str::from_utf8(&bytes[6 + 6 * 8..6 + 7 * 8]).expect("ascii");
        assert_eq!(u32::from_str_radix(size, 16).expect("hex"), 5);
        assert_eq!(&bytes[116..121], b"hello");
        assert_eq!(bytes.len() & 3, 0);
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
