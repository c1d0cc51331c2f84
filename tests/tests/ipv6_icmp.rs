//! End-to-end ICMPv6 echo through the NAT: warren runs (as `nobody`) inside a network namespace
//! the test makes (`ip netns add`), whose only "outside" addresses are `2001:db8:77::1` and
//! `192.0.2.77` on its loopback interface (a dummy interface needs a kernel module containers
//! often lack; the sockets see no difference) and whose `net.ipv4.ping_group_range` allows
//! unprivileged ping sockets (it governs ICMPv6 ping sockets too). A real Linux guest under QEMU
//! TCG configures itself by SLAAC and `ping6`s that address: the echo leaves through an ICMPv6
//! ping socket and the real replies come back with the guest's identifier. Echo to an address
//! the namespace has no route to gets an ICMPv6 destination unreachable instead of silence
//! (counted by the guest kernel). IPv4 ping to the IPv4 address runs alongside (dual stack).
//! No packet leaves the namespace.
//!
//! One guest boot runs every check; each `#[test]` asserts its own part.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use warren_tests::guest::{dhcp_lease, Image, DONE_MARKER};
use warren_tests::qemu::{Guest, NetAttach, DEFAULT_MAC};
use warren_tests::warren::{Warren, WarrenConfig};
use warren_tests::{is_root, run_checked};

const OUTSIDE6: &str = "2001:db8:77::1";
const OUTSIDE4: &str = "192.0.2.77";
/// Nothing in the namespace routes there.
const NO_ROUTE6: &str = "2001:db8:99::1";

/// A named network namespace made by the test, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        assert!(
            is_root(),
            "the ICMPv6 echo test needs root (network namespaces)"
        );
        let name = format!("wi6{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["addr", "add", &format!("{OUTSIDE6}/128"), "dev", "lo"]);
        ns.ip(&["addr", "add", &format!("{OUTSIDE4}/32"), "dev", "lo"]);
        run_checked(Command::new("ip").args([
            "netns",
            "exec",
            &ns.name,
            "sh",
            "-c",
            "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range",
        ]));
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

struct Run {
    results: BTreeMap<String, String>,
    context: String,
}

impl Run {
    fn get(&self, k: &str) -> &str {
        match self.results.get(k) {
            Some(v) => v,
            None => panic!("guest reported no {k:?}\n{}", self.context),
        }
    }
}

fn script() -> String {
    let slaac = warren_tests::guest::slaac_address("fec0:");
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
{slaac}
# Wait for the default route from the RA as well.
for i in $(seq 1 20); do ip -6 route show default | grep -q via && break; sleep 0.5; done
out=$(timeout 40 ping6 -c 3 -W 5 {OUTSIDE6} 2>&1); rc=$?
echo "$out"
r ping6_exit $rc
r ping6_replies "$(echo "$out" | grep -c 'bytes from {OUTSIDE6}')"
unr() {{ grep '^Icmp6InDestUnreachs' /proc/net/snmp6 | awk '{{print $2}}'; }}
before=$(unr)
out=$(timeout 30 ping6 -c 2 -W 5 {NO_ROUTE6} 2>&1); rc=$?
echo "$out"
r noroute_exit $rc
r noroute_replies "$(echo "$out" | grep -c 'bytes from {NO_ROUTE6}')"
r noroute_unreachable $(( $(unr) - before ))
{lease}
out=$(timeout 30 ping -c 2 -W 5 {OUTSIDE4} 2>&1); rc=$?
echo "$out"
r ping4_exit $rc
r ping4_replies "$(echo "$out" | grep -c 'bytes from {OUTSIDE4}')"
"#,
        lease = dhcp_lease(10, 3, 1),
    )
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let ns = Netns::new();
        let w = Warren::spawn_with(WarrenConfig {
            netns: Some(ns.name.clone()),
            ..WarrenConfig::default()
        });
        let image = Image::build("ipv6-icmp", &script());
        let guest = Guest::spawn_with(&image, &NetAttach::netdev(w.netdev()), DEFAULT_MAC);
        let done = guest.wait_for(DONE_MARKER, Duration::from_secs(240));
        let context = format!(
            "warren stderr:\n{}\nconsole:\n{}",
            w.stderr(),
            guest.output()
        );
        if let Err(e) = done {
            panic!("ipv6-icmp guest did not finish: {e}\n{context}");
        }
        eprintln!("ipv6-icmp: done after {:?}", guest.elapsed());
        let results = guest.results();
        drop(guest);
        drop(w);
        drop(ns);
        Run { results, context }
    })
}

#[test]
fn guest_configures_itself_by_slaac() {
    let r = run();
    assert!(r.get("slaac").starts_with("fec0::"), "{}", r.context);
}

#[test]
fn ping6_to_an_outside_address_gets_real_replies() {
    let r = run();
    assert_eq!(r.get("ping6_exit"), "0", "{}", r.context);
    assert_eq!(r.get("ping6_replies"), "3", "{}", r.context);
}

#[test]
fn ping6_without_a_route_fails_fast_and_is_never_answered() {
    let r = run();
    assert_ne!(r.get("noroute_exit"), "0", "{}", r.context);
    assert_eq!(r.get("noroute_replies"), "0", "{}", r.context);
    // The guest's kernel heard a destination unreachable for each echo, not silence.
    assert_eq!(r.get("noroute_unreachable"), "2", "{}", r.context);
}

#[test]
fn ipv4_ping_to_the_namespaces_ipv4_address_works_alongside() {
    let r = run();
    assert_eq!(r.get("ping4_exit"), "0", "{}", r.context);
    assert_eq!(r.get("ping4_replies"), "2", "{}", r.context);
}
