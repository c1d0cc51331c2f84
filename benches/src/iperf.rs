//! Parsing of `iperf3 -J` results.

use serde_json::Value;

/// The figures of one iperf3 TCP run we care about.
#[derive(Debug, Clone, PartialEq)]
pub struct Result {
    /// Throughput measured by the receiving side, bit/s.
    pub received_bps: f64,
    /// Throughput measured by the sending side, bit/s.
    pub sent_bps: f64,
    /// TCP retransmissions reported by the sender (0 if unknown).
    pub retransmits: u64,
    /// Whether the test was reversed (`-R`, server sends).
    pub reverse: bool,
}

/// Parse the JSON document printed by `iperf3 -c ... -J`.
///
/// iperf3 reports failures as a top-level `"error"` string (still with exit
/// status 1), which is returned as the error message.
pub fn parse(json: &str) -> std::result::Result<Result, String> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| format!("iperf3 output is not JSON: {e}"))?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3 reported: {err}"));
    }
    let end = v
        .get("end")
        .ok_or_else(|| "iperf3 JSON has no \"end\" section".to_string())?;
    let bps = |section: &str| -> std::result::Result<f64, String> {
        end.get(section)
            .and_then(|s| s.get("bits_per_second"))
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("iperf3 JSON lacks end.{section}.bits_per_second"))
    };
    let received_bps = bps("sum_received")?;
    let sent_bps = bps("sum_sent")?;
    let retransmits = end
        .get("sum_sent")
        .and_then(|s| s.get("retransmits"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let reverse = v
        .get("start")
        .and_then(|s| s.get("test_start"))
        .and_then(|t| t.get("reverse"))
        .and_then(Value::as_i64)
        .is_some_and(|r| r != 0);
    Ok(Result {
        received_bps,
        sent_bps,
        retransmits,
        reverse,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from a real iperf3 3.12 run.
    const OK: &str = r#"{
        "start": {"connected": [{"socket": 5, "local_host": "10.0.2.15",
            "local_port": 40000, "remote_host": "10.0.2.2", "remote_port": 5201}],
            "version": "iperf 3.12",
            "test_start": {"protocol": "TCP", "num_streams": 1, "blksize": 131072,
                "omit": 1, "duration": 5, "bytes": 0, "blocks": 0, "reverse": 1,
                "tos": 0, "target_bitrate": 0}},
        "intervals": [],
        "end": {
            "streams": [],
            "sum_sent": {"start": 0, "end": 5.000045, "seconds": 5.000045,
                "bytes": 6250000000, "bits_per_second": 1.0e10, "retransmits": 12,
                "sender": true},
            "sum_received": {"start": 0, "end": 5.000045, "seconds": 5.000045,
                "bytes": 6200000000, "bits_per_second": 9.92e9, "sender": true},
            "cpu_utilization_percent": {"host_total": 50.1}
        }
    }"#;

    #[test]
    fn parses_result() {
        let r = parse(OK).unwrap();
        assert_eq!(r.received_bps, 9.92e9);
        assert_eq!(r.sent_bps, 1.0e10);
        assert_eq!(r.retransmits, 12);
        assert!(r.reverse);
    }

    #[test]
    fn reports_errors() {
        let e = parse(
            r#"{"start": {}, "intervals": [], "end": {},
            "error": "unable to connect to server: Connection refused"}"#,
        )
        .unwrap_err();
        assert!(e.contains("Connection refused"), "{e}");
        assert!(parse("iperf3: error - unable to connect").is_err());
        assert!(parse(r#"{"end": {"sum_sent": {}}}"#).is_err());
    }
}
