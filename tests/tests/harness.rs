//! Self-test of the e2e harness, independent of warren: boots the guest on
//! QEMU's built-in slirp (same address plan) and checks DHCP, an HTTP GET
//! through 10.0.2.2 and result reporting. If this passes while the gateway
//! tests fail, the fault is in warren, not in the guest or the harness.

use std::collections::BTreeMap;
use std::time::Duration;

use warren_tests::backend::{Backend, NetOptions, Network};
use warren_tests::guest::{Image, DONE_MARKER};
use warren_tests::qemu::{Guest, DEFAULT_MAC};
use warren_tests::servers::{pseudo_random, HttpServer};

#[test]
fn guest_boots_gets_dhcp_lease_and_fetches_over_slirp() {
    let data = pseudo_random(300_000, 1);
    let http = HttpServer::start(BTreeMap::from([("/f".to_owned(), data)]));
    let image = Image::build(
        "harness-selftest",
        &format!(
            r#"
ip link set eth0 up
udhcpc -i eth0 -q -f -n -t 5 -T 2 -s /bin/true
echo "@@RESULT dhcp_exit=$?"
ip addr add 10.0.2.15/24 dev eth0
wget -q -O /tmp/f http://10.0.2.2:{}/f
echo "@@RESULT wget_exit=$?"
echo "@@RESULT sha=$(sha256sum /tmp/f | cut -d' ' -f1)"
echo "@@RESULT modules=$(lsmod | grep -c '^virtio_net ')"
"#,
            http.port
        ),
    );
    let net = Network::start(Backend::Slirp, &NetOptions::default());
    let mut guest = Guest::spawn_with(&image, &net.attach, DEFAULT_MAC);
    guest
        .wait_for(DONE_MARKER, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("guest did not finish: {e}"));
    eprintln!("self-test guest done after {:?}", guest.elapsed());
    let r = guest.results();
    let ctx = guest.output();
    assert_eq!(r.get("dhcp_exit").map(String::as_str), Some("0"), "{ctx}");
    assert_eq!(r.get("wget_exit").map(String::as_str), Some("0"), "{ctx}");
    assert_eq!(r.get("sha"), Some(&http.sha256("/f")), "{ctx}");
    assert_eq!(r.get("modules").map(String::as_str), Some("1"), "{ctx}");
    assert_eq!(r.get("script_exit").map(String::as_str), Some("0"), "{ctx}");
    assert_eq!(http.served(), vec![("/f".to_owned(), 200)]);

    // The guest powers off after its script; waiting for anything else must
    // fail promptly and carry the console output.
    guest
        .wait_exit(Duration::from_secs(20))
        .expect("QEMU exits after poweroff -f");
    let err = guest
        .wait_for("never printed", Duration::from_secs(5))
        .expect_err("a marker that never appears is an error");
    assert!(
        err.contains("QEMU exited") && err.contains(DONE_MARKER),
        "{err}"
    );
}
