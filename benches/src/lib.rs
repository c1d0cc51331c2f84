//! Benchmarks of warren against its peers.
//!
//! The pure parts (QEMU stream framing, iperf3 result parsing, statistics)
//! live here so `cargo test` covers them; the Linux-specific plumbing (tap
//! devices, namespaces, processes) lives in [`tap`], [`adapter`] and
//! [`proc`], and the orchestration in the `netbench` binary.

#[allow(unsafe_code)] // benchmark plumbing (tun, sendmmsg, poll, fork), not shipped
pub mod adapter;
pub mod frame;
pub mod iperf;
#[allow(unsafe_code)] // benchmark plumbing (tun, sendmmsg, poll, fork), not shipped
pub mod proc;
#[allow(unsafe_code)] // benchmark plumbing (tun, sendmmsg, poll, fork), not shipped
pub mod tap;

/// Median of a set of samples (mean of the two middle ones for even counts).
/// Returns `None` for an empty set.
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
