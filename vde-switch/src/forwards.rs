//! Host forwards (`--hostfwd` and the control socket's `add_hostfwd`): one table, the ids clients
//! see, and the gateway driver's forward behind each. Also answers control-socket requests
//! (`frontend/api.rs` does the socket side).

use crate::reactor::Driver;
use netstack::flow::Proto as FlowProto;
use rustc_hash::FxHashMap;
use slirp_compat::api::{self, ApiBackend, HostFwdEntry, HostFwdTable, LeaseInfo};
use slirp_compat::hostfwd::Proto;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Why a forward was not added (one line: slirp4netns' wording for the table's refusals).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The table refuses it (already forwarded, a bad address).
    #[error("{0}")]
    Table(String),
    /// The host socket cannot be bound.
    #[error("{0}")]
    Bind(#[from] std::io::Error),
}

/// Forwards: the API's table (ids as clients see them) and the driver's forward for each.
#[derive(Default)]
pub struct Forwards {
    pub table: HostFwdTable,
    driver_ids: FxHashMap<(Proto, SocketAddr), u32>,
    /// The guest of a forward that names none (`None`: the first DHCP lease).
    default_guest: Option<std::net::Ipv4Addr>,
}

fn flow_proto(p: Proto) -> FlowProto {
    match p {
        Proto::Tcp => FlowProto::Tcp,
        Proto::Udp => FlowProto::Udp,
    }
}

/// The daemon side of the API: forwards go to the driver, leases and counters come from the gateway.
struct Backend<'a> {
    default_guest: Option<std::net::Ipv4Addr>,
    driver: &'a mut Driver,
    driver_ids: &'a mut FxHashMap<(Proto, SocketAddr), u32>,
    now: Instant,
    /// The switch's counters (`Server::switch_stats`), for `stats`.
    switch: Vec<(&'static str, u64)>,
}

impl Backend<'_> {
    fn open(
        &mut self,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
        follow_family: bool,
    ) -> Result<(), ForwardError> {
        // The API names any address; the command line checked its own already.
        let cfg = self.driver.gw.config();
        let checked = slirp_compat::hostfwd::check_forward_guest(cfg, guest.ip(), follow_family);
        checked.map_err(|e| ForwardError::Table(e.to_string()))?;
        let id = self
            .driver
            .add_forward_with(flow_proto(proto), host, guest, follow_family)?;
        self.driver_ids.insert((proto, host), id);
        if follow_family && host.is_ipv6() {
            log::info!("forwarding {proto} {host} -> {guest} (or the guest's IPv6 address)");
        } else {
            log::info!("forwarding {proto} {host} -> {guest}");
        }
        Ok(())
    }
}

impl ApiBackend for Backend<'_> {
    fn default_guest(&self) -> IpAddr {
        IpAddr::V4(
            self.default_guest
                .unwrap_or(self.driver.gw.config().dhcp_start),
        )
    }
    fn ipv6_enabled(&self) -> bool {
        self.driver.gw.v6().is_some()
    }
    fn open_hostfwd(
        &mut self,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
        follow_family: bool,
    ) -> Result<(), api::OpenError> {
        Ok(self.open(proto, host, guest, follow_family)?)
    }
    fn close_hostfwd(&mut self, entry: &HostFwdEntry) {
        if let Some(id) = self.driver_ids.remove(&(entry.proto, entry.host)) {
            self.driver.remove_forward(id);
            log::info!(
                "stopped forwarding {} {} -> {}",
                entry.proto,
                entry.host,
                entry.guest
            );
        }
    }
    fn leases(&self) -> Vec<LeaseInfo> {
        let gw = &self.driver.gw;
        let v4 = gw.dhcp().leases();
        let mut out: Vec<LeaseInfo> = v4
            .iter()
            .map(|l| LeaseInfo::from_lease(l, self.now).with_ipv6(gw.guest_addrs6(l.mac)))
            .collect();
        // Then the guests known only by IPv6 (--no-ipv4, or SLAAC/DHCPv6 alone).
        out.extend(
            gw.guests6()
                .into_iter()
                .filter(|(m, _)| !v4.iter().any(|l| l.mac == *m))
                .map(|(m, a)| LeaseInfo::ipv6_only(m, a)),
        );
        out
    }
    fn stats(&self) -> Vec<(&'static str, u64)> {
        let mut v = self.driver.gw.stats().pairs();
        let (t, u, i) = self.driver.gw.flow_counts();
        v.push(("tcp_flows", t as u64));
        v.push(("udp_flows", u as u64));
        v.push(("icmp_flows", i as u64));
        v.extend(self.driver.gw.gauges());
        v.extend(self.switch.iter().copied());
        v
    }
}

impl Forwards {
    /// The guest of forwards that name none (the API's `add_hostfwd` without `guest_addr`).
    pub fn set_default_guest(&mut self, ip: std::net::Ipv4Addr) {
        self.default_guest = Some(ip);
    }

    /// Adds a forward (command line or API): checked against the table, bound, then recorded.
    /// `follow_family`: the rule named no guest (see `ResolvedHostFwd::follow_family`).
    pub fn add(
        &mut self,
        driver: &mut Driver,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
        follow_family: bool,
    ) -> Result<u32, ForwardError> {
        self.table
            .check(proto, host)
            .map_err(|e| ForwardError::Table(e.to_string()))?;
        let mut backend = Backend {
            default_guest: self.default_guest,
            driver,
            driver_ids: &mut self.driver_ids,
            now: Instant::now(),
            switch: Vec::new(),
        };
        backend.open(proto, host, guest, follow_family)?;
        self.table
            .add(proto, host, guest)
            .map_err(|e| ForwardError::Table(e.to_string()))
    }

    /// Answers one control-socket request (`switch`: the switch's counters for `stats`).
    pub fn handle_request(
        &mut self,
        request: &[u8],
        driver: &mut Driver,
        switch: Vec<(&'static str, u64)>,
    ) -> Vec<u8> {
        let mut backend = Backend {
            default_guest: self.default_guest,
            driver,
            driver_ids: &mut self.driver_ids,
            now: Instant::now(),
            switch,
        };
        api::handle_request(request, &mut self.table, &mut backend)
    }
}
