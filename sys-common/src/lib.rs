//! The system calls `vde-switch` (warren) and `tap-helper` (the setuid bridge helper) share:
//! passing a descriptor over a unix socket (SCM_RIGHTS) and `struct ifreq` interface ioctls.
//!
//! It depends on `libc` only, so the setuid helper keeps its minimal dependency set. Every `unsafe`
//! block is in the [`sys`] module, each with a `// SAFETY:` comment; what it exports is safe.

#[allow(unsafe_code)]
mod sys;

pub use sys::{
    ethtool_set_value, ioctl_ifreq, recv_fd, send_fd, IfReq, IfReqIoctl, ETHTOOL_STXCSUM, IFNAMSIZ,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn passes_a_descriptor_and_the_bytes() {
        let (a, b) = UnixDatagram::pair().expect("pair");
        let (p, q) = UnixDatagram::pair().expect("pair");
        assert_eq!(send_fd(a.as_fd(), b"K", Some(p.as_fd())).expect("send"), 1);
        let mut buf = [0u8; 16];
        let (n, fd) = recv_fd(b.as_fd(), &mut buf).expect("recv");
        assert_eq!(&buf[..n], b"K");
        // The received descriptor is the same socket: what it sends, q receives.
        let fd = fd.expect("an fd came");
        let got = UnixDatagram::from(fd);
        got.send(b"via").expect("send via passed fd");
        let mut r = [0u8; 8];
        assert_eq!(q.recv(&mut r).expect("recv"), 3);
        assert_eq!(&r[..3], b"via");
    }

    #[test]
    fn no_descriptor_and_eof() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        send_fd(a.as_fd(), b"E", None).expect("send");
        let mut buf = [0u8; 16];
        let (n, fd) = recv_fd(b.as_fd(), &mut buf).expect("recv");
        assert_eq!((n, fd.is_none()), (1, true));
        drop(a);
        let (n, fd) = recv_fd(b.as_fd(), &mut buf).expect("eof");
        assert_eq!((n, fd.is_none()), (0, true));
    }

    #[test]
    fn ifreq_names_and_payload() {
        let mut r = IfReq::with_name(b"tap0").expect("valid name");
        assert_eq!(&r.name()[..], b"tap0");
        r.set_u16(0x1002);
        assert_eq!(r.u16(), 0x1002);
        r.set_i32(-7);
        assert_eq!(r.i32(), -7);
        r.set_ipv4(std::net::Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(&r.data()[..8], &[2, 0, 0, 0, 10, 0, 2, 100]);
        assert!(IfReq::with_name(b"").is_none());
        assert!(IfReq::with_name(b"0123456789abcdef").is_none());
        assert!(IfReq::with_name(b"a\0b").is_none());
    }

    #[test]
    fn ioctl_on_loopback() {
        // SIOCGIFINDEX on "lo" through an AF_INET socket: lo exists in every network namespace.
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut r = IfReq::with_name(b"lo").expect("name");
        ioctl_ifreq(s.as_fd(), IfReqIoctl::GetIndex, &mut r).expect("SIOCGIFINDEX lo");
        assert!(r.i32() > 0);
        let mut bad = IfReq::with_name(b"no-such-if0").expect("name");
        assert!(ioctl_ifreq(s.as_fd(), IfReqIoctl::GetIndex, &mut bad).is_err());
    }
}
