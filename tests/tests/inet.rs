//! The TCP front end (`warren --listen HOST:PORT`): one real guest over QEMU's legacy
//! `-netdev socket,connect=H:P` and one over `-netdev stream,addr.type=inet`, on the same warren.
//! Each leases an address by DHCP and fetches a file from a host loopback server through 10.0.2.2.

use std::collections::BTreeMap;
use std::time::Duration;

use warren_tests::guest::{Image, READY_MARKER};
use warren_tests::qemu::{Guest, NetAttach};
use warren_tests::servers::{closed_port, pseudo_random, HttpServer};
use warren_tests::warren::{Warren, WarrenConfig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
const DONE: &str = "@@RESULT checks=done";

fn script(http: u16) -> String {
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
cat > /tmp/dhcp.sh <<'EOS'
#!/bin/sh
case "$1" in
bound|renew)
  echo "@@RESULT dhcp_ip=$ip"
  ip addr add "$ip/$mask" dev "$interface"
  for gw in $router; do ip route add default via "$gw" dev "$interface"; done
  ;;
esac
exit 0
EOS
chmod +x /tmp/dhcp.sh
ip link set eth0 up
timeout 60 udhcpc -i eth0 -s /tmp/dhcp.sh -q -f -n -t 5 -T 2
r dhcp_exit $?
timeout 60 wget -q -O /tmp/f http://10.0.2.2:{http}/file.bin
r wget_exit $?
r sha "$(sha256sum /tmp/f | cut -d' ' -f1)"
echo "{DONE}"
"#
    )
}

#[test]
fn legacy_socket_and_stream_inet_guests_share_one_tcp_listener() {
    let http = HttpServer::start(BTreeMap::from([(
        "/file.bin".to_owned(),
        pseudo_random(1 << 20, 42),
    )]));
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let warren = Warren::spawn_with(WarrenConfig {
        args: vec![
            "--listen".into(),
            listen.clone(),
            "--dns-upstream".into(),
            "127.0.0.1:1".into(),
        ],
        pcap: false,
        fresh_netns: false,
        netns: None,
    });
    let image = Image::build("inet", &script(http.port));
    let guests = [
        (
            "socket",
            format!("socket,id=n0,connect={listen}"),
            "52:54:00:00:00:b1",
        ),
        (
            "stream-inet",
            format!("stream,id=n0,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port={port}"),
            "52:54:00:00:00:b2",
        ),
    ];
    let running: Vec<(&str, Guest)> = guests
        .iter()
        .map(|(name, netdev, mac)| {
            (
                *name,
                Guest::spawn_with(&image, &NetAttach::netdev(netdev.clone()), mac),
            )
        })
        .collect();
    let mut leases = Vec::new();
    for (name, g) in &running {
        let outcome = g
            .wait_for(READY_MARKER, BOOT_TIMEOUT)
            .and_then(|_| g.wait_for(DONE, RUN_TIMEOUT));
        let results = g.results();
        let ctx = || {
            format!(
                "\n{name} console:\n{}\nwarren stderr:\n{}",
                g.output(),
                warren.stderr()
            )
        };
        assert!(outcome.is_ok(), "{name}: {outcome:?}{}", ctx());
        assert_eq!(
            results.get("dhcp_exit").map(String::as_str),
            Some("0"),
            "{name}: DHCP{}",
            ctx()
        );
        assert_eq!(
            results.get("wget_exit").map(String::as_str),
            Some("0"),
            "{name}: HTTP{}",
            ctx()
        );
        assert_eq!(
            results.get("sha"),
            Some(&http.sha256("/file.bin")),
            "{name}: checksum{}",
            ctx()
        );
        leases.push(results.get("dhcp_ip").cloned().unwrap_or_default());
    }
    leases.sort();
    assert_eq!(
        leases,
        vec!["10.0.2.15".to_string(), "10.0.2.16".to_string()],
        "distinct leases"
    );
}
