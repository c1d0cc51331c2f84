//! The Internet checksum (RFC 1071), summed eight bytes at a time.

use std::net::IpAddr;

/// Adds `data` to a running one's-complement sum (not yet folded).
///
/// Big-endian 32-bit words are added into four 64-bit accumulators: no carry handling is needed for
/// the first 2^32 words, which lets the compiler vectorise the loop. (One's-complement sums of 32-bit
/// words fold to the same 16-bit sum as sums of 16-bit words.)
pub fn add(sum: u64, data: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        acc[0] += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        acc[1] += u64::from(u32::from_be_bytes([c[4], c[5], c[6], c[7]]));
        acc[2] += u64::from(u32::from_be_bytes([c[8], c[9], c[10], c[11]]));
        acc[3] += u64::from(u32::from_be_bytes([c[12], c[13], c[14], c[15]]));
    }
    let mut total = u64::from(fold(sum));
    for a in acc {
        total += u64::from(fold(a));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        total += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        total += u64::from(rest[i]) << 8;
    }
    total
}

/// Folds a running sum to 16 bits (not complemented).
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Checksum of `data` alone (e.g. an IPv4 header or an ICMPv4 message).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// The running sum of a TCP/UDP pseudo-header, for either IP version.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let mut sum = 0u64;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum = add(sum, &s.octets());
            sum = add(sum, &d.octets());
        }
        (s, d) => {
            sum = add(sum, &to_v6(s).octets());
            sum = add(sum, &to_v6(d).octets());
        }
    }
    sum + u64::from(proto) + len as u64
}

fn to_v6(a: IpAddr) -> std::net::Ipv6Addr {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Checksum of a transport segment (`segment` includes its header with the checksum field as it is).
pub fn transport(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    !fold(add(pseudo_header(src, dst, proto, segment.len()), segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            s += u32::from(w);
            while s >> 16 != 0 {
                s = (s & 0xffff) + (s >> 16);
            }
        }
        !(s as u16)
    }

    #[test]
    fn matches_naive_for_all_lengths() {
        let mut x: u32 = 12345;
        let data: Vec<u8> = (0..300)
            .map(|_| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        for n in 0..data.len() {
            assert_eq!(checksum(&data[..n]), naive(&data[..n]), "len {n}");
        }
        let ff = vec![0xffu8; 1000];
        assert_eq!(checksum(&ff), naive(&ff));
    }

    #[test]
    fn large_buffers_match_naive() {
        let ff = vec![0xffu8; 65536 + 7];
        assert_eq!(checksum(&ff), naive(&ff));
        let mut x: u32 = 99;
        let mixed: Vec<u8> = (0..65535)
            .map(|_| {
                x = x.wrapping_mul(1664525).wrapping_add(1013904223);
                (x >> 24) as u8
            })
            .collect();
        assert_eq!(checksum(&mixed), naive(&mixed));
        // A running sum carried across calls equals one call over the concatenation.
        let (a, b) = mixed.split_at(1000);
        assert_eq!(!fold(add(add(0, a), b)), checksum(&mixed));
    }

    #[test]
    fn rfc1071_example() {
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(!checksum(&d), 0xddf2);
    }
}
