//! The JSON API (slirp4netns's protocol plus warren's `list_leases`/`stats`): several requests
//! (the input split at newlines) against one forwarding table and a backend that sometimes refuses
//! to bind, as the daemon serves them one connection each.
//!
//! Checked: every reply is a JSON object with exactly one of `return`/`error`; a request that
//! parses prints (`to_json`) to one that parses back equal; `warren ctl` can render every reply;
//! the table never holds two entries for the same protocol and host socket, nor two equal ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slirp_compat::api::{self, ApiBackend, HostFwdEntry, HostFwdTable, LeaseInfo};
use slirp_compat::Proto;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

struct Backend {
    refuse: bool,
    ipv6: bool,
    open: HashSet<(Proto, SocketAddr)>,
}

impl ApiBackend for Backend {
    fn default_guest(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 2, 100))
    }
    fn ipv6_enabled(&self) -> bool {
        self.ipv6
    }
    fn open_hostfwd(
        &mut self,
        proto: Proto,
        host: SocketAddr,
        _g: SocketAddr,
        _follow: bool,
    ) -> Result<(), api::OpenError> {
        if self.refuse {
            return Err("Address already in use (os error 98)".into());
        }
        assert!(
            self.open.insert((proto, host)),
            "{proto} {host} bound twice"
        );
        Ok(())
    }
    fn close_hostfwd(&mut self, e: &HostFwdEntry) {
        assert!(
            self.open.remove(&(e.proto, e.host)),
            "closed a forward never opened"
        );
    }
    fn leases(&self) -> Vec<LeaseInfo> {
        vec![LeaseInfo::new(
            [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            Ipv4Addr::new(10, 0, 2, 15),
            Some("guest\"\n".into()),
            3600,
        )]
    }
    fn stats(&self) -> Vec<(&'static str, u64)> {
        vec![("frames_in", 1), ("drop_malformed", u64::MAX)]
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut table = HostFwdTable::new();
    let mut backend = Backend {
        refuse: false,
        ipv6: flags & 1 != 0,
        open: HashSet::new(),
    };
    for (i, req) in rest.split(|&b| b == b'\n').take(32).enumerate() {
        backend.refuse = flags >> (1 + i % 7) & 1 != 0 && i % 3 == 2;
        if let Ok(r) = api::parse_request(req) {
            let again = api::parse_request(&r.to_json()).expect("our own request parses");
            assert_eq!(again, r, "request changed through to_json");
            let reply = api::handle_request(req, &mut table, &mut backend);
            let _ = slirp_compat::render_reply(&r, &reply);
            check_reply(&reply);
        } else {
            check_reply(&api::handle_request(req, &mut table, &mut backend));
        }
        let mut ids = HashSet::new();
        let mut socks = HashSet::new();
        for e in table.list() {
            assert!(ids.insert(e.id), "id {} twice", e.id);
            assert!(
                socks.insert((e.proto, e.host)),
                "{} forwarded twice",
                e.host
            );
            assert!(
                backend.open.contains(&(e.proto, e.host)),
                "table entry without a socket"
            );
        }
        assert_eq!(
            backend.open.len(),
            table.len(),
            "a socket without a table entry"
        );
    }
});

fn check_reply(reply: &[u8]) {
    let v: serde_json::Value = serde_json::from_slice(reply).expect("reply is JSON");
    let o = v.as_object().expect("reply is an object");
    assert!(
        o.contains_key("return") ^ o.contains_key("error"),
        "reply {v} has not exactly one of return/error"
    );
}
