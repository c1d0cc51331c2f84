//! The switch: its ports and their queues, the MAC table, the LAN guards (IP source guard, DHCP
//! snooping, storm control) and the pcap; no sockets of its own beyond the ports' transmit sides.
//!
//! A front end hands every frame it reads to [`Switch::switch_in`], which learns, guards and sends it
//! to other ports, and says whether the gateway must see it too (the front end then passes it to the
//! driver, batched). The gateway's frames come back through [`Switch::gateway_out`]. Ports queue what
//! they cannot write at once; [`Switch::flush_and_resume`] writes the queues at the end of a batch and
//! lets the gateway resume senders it paused on a congested port.
//!
//! Children: `mac` (the MAC table), `port` (transmit sides, counters, queue shares), `framing` (QEMU's
//! stream framing), `guard` (what a frame claims), `binding` (IP source guard), `storm` (token bucket).
//! They do not depend on this file.

pub mod binding;
pub mod framing;
pub mod guard;
pub mod mac;
pub mod port;
pub mod storm;

use crate::reactor::{clear_ready, poll_ready, port_token, Driver, Stopper};
use binding::{Guard, Verdict};
use guard::L3;
use mac::{Dest, MacTable, Refused};
use netstack::config::Ipv4Net;
use netstack::dhcp::DhcpServer;
use netstack::gateway::Gateway;
use netstack::wire::ethernet;
use netstack::Mac;
use netstack_driver::pcap::PcapWriter;
use port::{Class, Port, PortCounters, PortId, Sent, Tx};
use slotmap::SlotMap;
use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;
use storm::{StormLimit, TokenBucket};

/// LAN safety limits (storm control, table bounds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanOptions {
    /// Flooded frames per second and burst per ingress port (`rate` 0: unlimited).
    pub storm: StormLimit,
    /// Learned MACs in all, and on one port.
    pub max_macs: usize,
    pub max_macs_per_port: usize,
    /// Addresses bound without a DHCP lease (IP source guard).
    pub max_bindings: usize,
}

impl Default for LanOptions {
    fn default() -> Self {
        LanOptions {
            storm: StormLimit::default(),
            max_macs: mac::DEFAULT_MAX_MACS,
            max_macs_per_port: mac::DEFAULT_MAX_MACS_PER_PORT,
            max_bindings: binding::DEFAULT_MAX,
        }
    }
}

struct PortSlot {
    port: Port,
    waker: Waker,
    /// The gateway paused senders because this port was congested: resume them when it drains.
    gw_waiting: bool,
}

/// The switch's state, owned by the event loop's thread.
pub struct Switch {
    queue: Arc<crate::reactor::ReadyQueue>,
    stopper: Stopper,
    ports: SlotMap<PortId, PortSlot>,
    dirty: Vec<PortId>,
    dead: Vec<(PortId, &'static str)>,
    /// The gateway paused a sender on a congested port (which one: [`PortSlot::gw_waiting`]), or on
    /// a port that closed since (`closed_waiting`).
    link_waiting: bool,
    closed_waiting: bool,
    macs: MacTable<PortId>,
    gateway_mac: Mac,
    /// Largest frame on the LAN (MTU + Ethernet header).
    mtu_frame: usize,
    pcap: Option<PcapWriter<BufWriter<File>>>,
    /// Addresses only the gateway may claim (its own, the DNS forwarder's, the guestfwd services').
    protected_ips: Vec<[u8; 4]>,
    /// IPv6 addresses only the gateway may claim (the router's global and link-local, the DNS).
    protected6: Vec<[u8; 16]>,
    /// The IPv6 prefix (claims of its addresses and of link-local ones are bound, like IPv4's).
    net6: Option<netstack::addr6::Ipv6Net>,
    isolate: bool,
    /// IP source guard: addresses bound to MACs.
    guard: Guard,
    /// The LAN (claims of its addresses are bound; others are the gateway's business).
    net: Ipv4Net,
    storm: StormLimit,
    /// Counters of ports that have closed (for the totals in `stats`).
    closed: PortCounters,
    /// passt's `--one-off`: stop when a stream guest's port closes.
    one_off: bool,
    /// `--no-gateway`: nothing is delivered to the gateway (another warren on the overlay is it).
    no_gateway: bool,
    /// A port that may carry DHCP server messages and claim the gateway's addresses (the uplink
    /// towards the real gateway under `--no-gateway`).
    trusted: Option<PortId>,
    /// The source (MAC, address) of ICMP "fragmentation needed" for frames too big for their port.
    icmp_from: (Mac, std::net::Ipv4Addr),
    /// ICMP "fragmentation needed" sent.
    frag_needed: u64,
    /// Counters and control-socket commands of things attached to the switch (the VXLAN uplink).
    attachments: Vec<std::rc::Rc<std::cell::RefCell<dyn Attachment>>>,
}

/// The switch's gateway MAC under `--no-gateway`: a group address nobody sends from.
const NO_GATEWAY_MAC: Mac = [0xff, 0xff, 0xff, 0xff, 0xff, 0xfe];

/// Something a front end attaches to the switch: it reports counters (in `stats`) and may answer
/// control-socket requests of its own.
pub trait Attachment {
    /// Counters, by name.
    fn stats(&self) -> Vec<(&'static str, u64)>;
    /// The reply to a control-socket request it handles; None for the others.
    fn api(&mut self, _request: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

impl Switch {
    /// A switch in front of `gw`; ports report writability on `queue`, `stopper` serves `--one-off`.
    pub fn new(
        queue: Arc<crate::reactor::ReadyQueue>,
        stopper: Stopper,
        gw: &Gateway,
        lan: &LanOptions,
        isolate: bool,
        pcap: Option<PcapWriter<BufWriter<File>>>,
    ) -> Self {
        let cfg = gw.config();
        let mut protected_ips = vec![cfg.gateway.octets(), cfg.dns.octets()];
        for g in &cfg.guestfwds {
            if !protected_ips.contains(&g.addr.octets()) {
                protected_ips.push(g.addr.octets());
            }
        }
        let mut protected6 = Vec::new();
        if let Some(plan) = &cfg.v6 {
            let ll = netstack::addr6::link_local(&gw.mac());
            for a in [plan.router, plan.dns, plan.router_ll, ll] {
                if !protected6.contains(&a.octets()) {
                    protected6.push(a.octets());
                }
            }
        }
        Switch {
            queue,
            stopper,
            ports: SlotMap::with_key(),
            dirty: Vec::new(),
            dead: Vec::new(),
            link_waiting: false,
            closed_waiting: false,
            macs: MacTable::new(lan.max_macs, lan.max_macs_per_port),
            gateway_mac: gw.mac(),
            mtu_frame: usize::from(cfg.mtu) + ethernet::HEADER_LEN,
            pcap,
            protected_ips,
            protected6,
            net6: cfg.v6.as_ref().map(|p| p.net),
            isolate,
            guard: Guard::new(lan.max_bindings),
            net: cfg.net,
            storm: lan.storm,
            closed: PortCounters::default(),
            one_off: false,
            no_gateway: false,
            trusted: None,
            icmp_from: (gw.mac(), cfg.gateway),
            frag_needed: 0,
            attachments: Vec::new(),
        }
    }

    /// `--no-gateway`: the switch delivers nothing to the gateway.
    pub fn set_no_gateway(&mut self) {
        self.no_gateway = true;
        self.gateway_mac = NO_GATEWAY_MAC;
    }

    /// The gateway's MAC as the switch knows it (a group address under `--no-gateway`).
    pub fn gateway_mac(&self) -> Mac {
        self.gateway_mac
    }

    /// Port `id` may carry DHCP server messages and frames claiming the gateway's addresses.
    pub fn trust_port(&mut self, id: PortId) {
        self.trusted = Some(id);
    }

    /// Attaches counters and control-socket commands (see [`Attachment`]).
    pub fn attach(&mut self, a: std::rc::Rc<std::cell::RefCell<dyn Attachment>>) {
        self.attachments.push(a);
    }

    /// The reply of the attachment that handles `request`, if one does.
    pub fn attachment_api(&mut self, request: &[u8]) -> Option<Vec<u8>> {
        self.attachments
            .iter()
            .find_map(|a| a.try_borrow_mut().ok()?.api(request))
    }

    /// Largest frame on the LAN (MTU + Ethernet header).
    pub fn mtu_frame(&self) -> usize {
        self.mtu_frame
    }

    /// Creates a port carrying frames of at most `max_frame` bytes (and at most the LAN's).
    pub fn add_port(&mut self, name: String, tx: Tx, max_frame: usize) -> PortId {
        let mut port = Port::new(name, tx, max_frame.min(self.mtu_frame));
        port.storm = Some(TokenBucket::new(self.storm, Instant::now()));
        let queue = &self.queue;
        let id = self.ports.insert_with_key(|k| PortSlot {
            port,
            waker: queue.waker(port_token(k)),
            gw_waiting: false,
        });
        log::info!("port {id} connected ({})", self.ports[id].port.name);
        id
    }

    /// Removes a port and forgets its MACs.
    pub fn close_port(&mut self, id: PortId, why: &str) {
        let Some(slot) = self.ports.remove(id) else {
            return;
        };
        let p = slot.port;
        log::info!("port {id} ({}) closed: {why}; {:?}", p.name, p.counters);
        if slot.gw_waiting {
            // Paused senders towards it are resumed at the next flush.
            self.link_waiting = true;
            self.closed_waiting = true;
        }
        self.closed.add(&p.counters);
        for mac in self.macs.remove_port(id) {
            self.guard.remove_mac(&mac);
        }
        if self.one_off && p.name.starts_with("stream") {
            log::info!("--one-off: the guest left; stopping");
            self.stopper.stop();
        }
    }

    /// passt's `--one-off`: stop once a stream guest (QEMU) has disconnected.
    pub fn stop_when_guest_leaves(&mut self) {
        self.one_off = true;
    }

    pub fn port_exists(&self, id: PortId) -> bool {
        self.ports.contains_key(id)
    }

    pub fn port_counters_mut(&mut self, id: PortId) -> Option<&mut PortCounters> {
        self.ports.get_mut(id).map(|s| &mut s.port.counters)
    }

    pub fn port_counters(&self, id: PortId) -> Option<&PortCounters> {
        self.ports.get(id).map(|s| &s.port.counters)
    }

    /// The switch's counters summed over every port that ever existed (`port_` + counter name), plus
    /// the sizes of its tables.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let mut total = self.closed.clone();
        for slot in self.ports.values() {
            total.add(&slot.port.counters);
        }
        let mut v: Vec<(&'static str, u64)> = total.stat_pairs().to_vec();
        v.push(("ports", self.ports.len() as u64));
        v.push(("macs", self.macs.len() as u64));
        v.push(("ip_bindings", self.guard.len() as u64));
        v.push(("icmp_frag_needed", self.frag_needed));
        for a in &self.attachments {
            if let Ok(a) = a.try_borrow() {
                v.extend(a.stats());
            }
        }
        v
    }

    /// One line per open port: its name and nonzero counters (for the exit log).
    pub fn port_summaries(&self) -> Vec<String> {
        let mut ports: Vec<_> = self.ports.iter().collect();
        ports.sort_by_key(|(id, _)| id.number());
        ports
            .into_iter()
            .map(|(id, s)| {
                let c: Vec<String> = s
                    .port
                    .counters
                    .pairs()
                    .iter()
                    .filter(|(_, v)| *v > 0)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("port {id} ({}): {}", s.port.name, c.join(" "))
            })
            .collect()
    }

    /// Ages the MAC table and the IP bindings.
    pub fn expire(&mut self, now: Instant) {
        self.macs.expire(now);
        self.guard.expire(now);
    }

    /// Writes buffered pcap records out.
    pub fn flush_pcap(&mut self) {
        if let Some(pc) = self.pcap.as_mut() {
            let _ = pc.flush();
        }
    }

    /// Learns and switches a frame from `port` to other ports; true if the gateway must see it too
    /// (the caller delivers it, possibly batched with others). `dhcp` says who holds which lease (the
    /// IP source guard).
    pub fn switch_in(
        &mut self,
        now: Instant,
        port: PortId,
        frame: &[u8],
        dhcp: &DhcpServer,
    ) -> bool {
        if frame.len() < ethernet::HEADER_LEN {
            return false;
        }
        let Some(p) = self.ports.get_mut(port).map(|s| &mut s.port) else {
            return false;
        };
        // Every frame goes to the pcap except what storm control drops (a flood would fill the disk).
        let mut pcap = self.pcap.as_mut();
        let mut record = |f: &[u8]| {
            if let Some(pc) = pcap.take() {
                let _ = pc.frame(f);
            }
        };
        p.counters.frames_in += 1;
        p.counters.bytes_in += frame.len() as u64;
        let trusted = self.trusted == Some(port);
        if let Some(claim) = guard::claims(frame, &self.protected_ips).filter(|_| !trusted) {
            record(frame);
            p.counters.drop_spoofed += 1;
            log::debug!("port {port}: dropped a frame that {claim}");
            return false;
        }
        if let Some(claim) = guard::claims6(frame, &self.protected6).filter(|_| !trusted) {
            record(frame);
            p.counters.drop_spoofed += 1;
            log::debug!("port {port}: dropped a frame that {claim}");
            return false;
        }
        let (dst, src) = (mac_at(frame, 0), mac_at(frame, 6));
        let dest = match self.macs.forward(now, port, src, dst, self.gateway_mac) {
            Ok(d) => d,
            Err(r) => {
                record(frame);
                let why = match r {
                    Refused::GatewayMac => "uses the gateway's MAC".to_string(),
                    Refused::GroupSource => "has a multicast source MAC".to_string(),
                    Refused::MacInUse(other) => format!("uses a MAC live on port {other}"),
                    Refused::MacLimit => "comes from one MAC too many".to_string(),
                };
                if r == Refused::MacLimit {
                    p.counters.drop_mac_limit += 1;
                } else {
                    p.counters.drop_refused += 1;
                }
                log::debug!("port {port}: dropped a frame that {why}");
                return false;
            }
        };
        // Storm control: whatever this port floods is rate-limited (IPv6 multicast included).
        if let Dest::Flood { .. } = dest {
            if !p.storm.as_mut().is_none_or(|b| b.allow(now)) {
                p.counters.drop_storm += 1;
                return false;
            }
        }
        record(frame);
        // DHCP snooping and IP source guard.
        let mut claimed6 = [None, None];
        let claimed = match guard::inspect(frame) {
            L3::Ipv4 {
                dhcp_server: true, ..
            } if !trusted => {
                p.counters.drop_dhcp_server += 1;
                log::debug!("port {port}: dropped a DHCP server message");
                return false;
            }
            L3::Ipv6 {
                router_advert: true,
                ..
            } if !trusted => {
                p.counters.drop_rogue_ra += 1;
                log::debug!("port {port}: dropped an IPv6 router advertisement");
                return false;
            }
            L3::Ipv6 {
                dhcp_server: true, ..
            } if !trusted => {
                p.counters.drop_dhcp_server += 1;
                log::debug!("port {port}: dropped a DHCPv6 server message");
                return false;
            }
            L3::Arp { spa } => Some(spa),
            L3::Ipv4 { src, .. } => Some(src),
            // IPv6 source guard: the source, and the target a neighbour advertisement claims.
            L3::Ipv6 { src, na_target, .. } if !trusted => {
                claimed6 = [Some(src), na_target];
                None
            }
            L3::Ipv6 { .. } | L3::Other => None,
        };
        for ip in claimed6.into_iter().flatten().map(std::net::Ipv6Addr::from) {
            if ip.is_unspecified() {
                // Duplicate address detection, before the guest has an address.
                continue;
            }
            if ip.is_multicast() {
                p.counters.drop_spoofed += 1;
                log::debug!("port {port}: dropped a frame claiming the group address {ip}");
                return false;
            }
            let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
            if !link_local && !self.net6.is_some_and(|n| n.contains(ip)) {
                continue;
            }
            let verdict = self.guard.check(now, src, ip.into(), None);
            if !admit(&mut p.counters, port, ip.into(), verdict) {
                return false;
            }
        }
        if let Some(ip) = claimed.map(std::net::Ipv4Addr::from) {
            if ip.is_unspecified() {
                // ARP probes and DHCP clients before they have an address.
            } else if ip.is_broadcast() || ip.is_multicast() || ip == self.net.broadcast() {
                p.counters.drop_spoofed += 1;
                log::debug!("port {port}: dropped a frame from the group address {ip}");
                return false;
            } else if self.net.contains(ip) {
                let verdict = self.guard.check(now, src, ip.into(), dhcp.mac_for_ip(ip));
                if !admit(&mut p.counters, port, ip.into(), verdict) {
                    return false;
                }
            }
        }
        match dest {
            Dest::Gateway => !self.no_gateway,
            Dest::Port(_) | Dest::Flood { gateway: false } if self.isolate => {
                p.counters.drop_isolated += 1;
                false
            }
            Dest::Port(to) => {
                if !self.too_big(port, to, frame) {
                    self.port_send(to, frame, Class::Peer);
                }
                false
            }
            Dest::Flood { gateway } => {
                if !self.isolate {
                    self.flood(Some(port), frame, Class::Flood);
                }
                gateway && !self.no_gateway
            }
            Dest::Drop => false,
        }
    }

    /// Whether `frame` (from port `from`) is too big for port `to`: then it is dropped and counted,
    /// and an IPv4 packet with DF set is answered with ICMP "fragmentation needed" (path MTU
    /// discovery across an uplink whose underlay carries less than the LAN).
    fn too_big(&mut self, from: PortId, to: PortId, frame: &[u8]) -> bool {
        let Some(slot) = self.ports.get_mut(to) else {
            return false;
        };
        let max = slot.port.max_frame;
        if frame.len() <= max {
            return false;
        }
        slot.port.counters.drop_oversize += 1;
        let mtu = u16::try_from(max - ethernet::HEADER_LEN).unwrap_or(u16::MAX);
        let (mac, ip) = self.icmp_from;
        if let crate::vxlan::TooBig::Reply(icmp) = crate::vxlan::frag_needed(frame, mtu, mac, ip) {
            self.frag_needed += 1;
            self.port_send(from, &icmp, Class::Gateway);
        }
        true
    }

    /// Sends `frame` to every port but `except`.
    fn flood(&mut self, except: Option<PortId>, frame: &[u8], class: Class) {
        for (id, slot) in self.ports.iter_mut() {
            if Some(id) == except {
                continue;
            }
            match slot.port.send_class(frame, class) {
                Sent::Done => {}
                Sent::Queued => self.dirty.push(id),
                Sent::Failed => self.dead.push((id, "send failed")),
            }
        }
    }

    /// A frame from the gateway: to its port, or flooded. False when that port is congested (the
    /// frame was queued; the gateway pauses bulk data towards that port until `link_ready`).
    pub fn gateway_out(&mut self, now: Instant, frame: &[u8]) -> bool {
        if frame.len() < ethernet::HEADER_LEN {
            return true;
        }
        if let Some(pc) = self.pcap.as_mut() {
            let _ = pc.frame(frame);
        }
        match self
            .macs
            .lookup(now, mac_at(frame, 0), self.gateway_mac, None)
        {
            Dest::Port(p) => {
                self.port_send(p, frame, Class::Gateway);
                let Some(slot) = self.ports.get_mut(p) else {
                    return true;
                };
                let congested = slot.port.congested();
                if congested {
                    slot.gw_waiting = true;
                    self.link_waiting = true;
                }
                !congested
            }
            Dest::Flood { .. } => {
                self.flood(None, frame, Class::Gateway);
                true
            }
            Dest::Gateway | Dest::Drop => true,
        }
    }

    /// Flushes port queues; when a port the gateway paused on has room again (or is gone), lets the
    /// gateway resume the senders towards it. Senders towards ports that are still congested stay
    /// paused: a guest that stops reading holds up only its own traffic.
    pub fn flush_and_resume(&mut self, now: Instant, driver: &mut Driver) {
        self.flush_ports();
        if !self.link_waiting {
            return;
        }
        let (mut ready, mut still) = (false, false);
        for slot in self.ports.values_mut() {
            if !slot.gw_waiting {
                continue;
            }
            if slot.port.congested() {
                still = true;
            } else {
                slot.gw_waiting = false;
                ready = true;
            }
        }
        // A paused port that closed since counts as ready (its paused senders are resumed).
        ready |= std::mem::take(&mut self.closed_waiting);
        self.link_waiting = still;
        if ready {
            let ports = &self.ports;
            let congested = self
                .macs
                .macs_on(now, |id| ports.get(id).is_some_and(|s| s.port.congested()));
            driver.link_ready_except(now, &|mac| congested.contains(mac), &mut |f| {
                self.gateway_out(now, f)
            });
            self.flush_ports();
        }
    }

    fn port_send(&mut self, id: PortId, frame: &[u8], class: Class) {
        let Some(slot) = self.ports.get_mut(id) else {
            return;
        };
        match slot.port.send_class(frame, class) {
            Sent::Done => {}
            Sent::Queued => self.dirty.push(id),
            Sent::Failed => self.dead.push((id, "send failed")),
        }
    }

    fn flush_ports(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for id in dirty {
            let Some(slot) = self.ports.get_mut(id) else {
                continue;
            };
            match slot.port.flush() {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(fd) = slot.port.writable_fd() {
                        clear_ready(fd, &slot.waker, true, &self.queue, port_token(id));
                    }
                }
                Err(_) => self.dead.push((id, "write failed")),
            }
        }
        for (id, why) in std::mem::take(&mut self.dead) {
            self.close_port(id, why);
        }
    }

    /// Port `id` reported writability: flush it with the others at the end of the batch.
    pub fn port_writable(&mut self, id: PortId) {
        let Some(slot) = self.ports.get(id) else {
            return;
        };
        if let Some(fd) = slot.port.writable_fd() {
            if poll_ready(fd, &slot.waker, true) {
                self.dirty.push(id);
            }
        }
    }
}

fn fmt_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The MAC at byte `at` of `f` (which must hold 6 bytes there).
pub fn mac_at(f: &[u8], at: usize) -> Mac {
    [f[at], f[at + 1], f[at + 2], f[at + 3], f[at + 4], f[at + 5]]
}

/// Counts and logs a source-guard verdict; true when the frame may pass.
fn admit(
    counters: &mut port::PortCounters,
    port: impl std::fmt::Display,
    ip: std::net::IpAddr,
    verdict: Verdict,
) -> bool {
    match verdict {
        Verdict::Ok => true,
        Verdict::Spoofed(owner) => {
            counters.drop_spoofed += 1;
            log::debug!(
                "port {port}: dropped a frame claiming {ip}, which belongs to {}",
                fmt_mac(&owner)
            );
            false
        }
        Verdict::Full => {
            counters.drop_bind_limit += 1;
            log::debug!("port {port}: address table full; dropped a claim of {ip}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::{Reactor, ReadyQueue};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A transmit side that records what it is given.
    struct Record(Rc<RefCell<Vec<Vec<u8>>>>);

    impl port::Transmit for Record {
        fn send(&mut self, frame: &[u8], _: &mut PortCounters) -> Sent {
            self.0.borrow_mut().push(frame.to_vec());
            Sent::Done
        }
    }

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x88, 0xb5]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    /// An IPv4 frame `dst` <- `src` (10.0.2.15 -> 10.0.2.16), UDP `sport` -> `dport`, DF set, `len`
    /// bytes of IP.
    fn ipv4_frame(dst: Mac, src: Mac, sport: u16, dport: u16, len: usize) -> Vec<u8> {
        use netstack::wire::ip;
        let mut f = vec![0u8; 14 + len];
        ethernet::write_header(&mut f, dst, src, ethernet::ETHERTYPE_IPV4);
        ip::write_header(
            &mut f[14..],
            std::net::Ipv4Addr::new(10, 0, 2, 15).into(),
            std::net::Ipv4Addr::new(10, 0, 2, 16).into(),
            ip::PROTO_UDP,
            len - 20,
        );
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn too_big_no_gateway_and_a_trusted_port() {
        let queue = Arc::new(ReadyQueue::default());
        let reactor: Reactor<u32> = Reactor::new(queue.clone());
        let gw = Gateway::new(netstack::config::Config::default(), 7);
        let mut sw = Switch::new(
            queue,
            reactor.stopper(),
            &gw,
            &LanOptions::default(),
            false,
            None,
        );
        let seen_g: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let seen_u: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let g = sw.add_port(
            "guest".into(),
            Tx::Custom(Box::new(Record(seen_g.clone()))),
            9000,
        );
        // An uplink carrying IP packets of 1450 bytes.
        let u = sw.add_port(
            "uplink".into(),
            Tx::Custom(Box::new(Record(seen_u.clone()))),
            1464,
        );
        let (mg, mu) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let now = Instant::now();
        sw.switch_in(now, u, &frame([0xff; 6], mu), gw.dhcp());
        // Too big for the uplink: dropped, and the sender hears "fragmentation needed", MTU 1450.
        assert!(!sw.switch_in(now, g, &ipv4_frame(mu, mg, 1000, 2000, 1500), gw.dhcp()));
        assert!(seen_u.borrow().is_empty());
        let icmp = seen_g.borrow().last().cloned().expect("an ICMP error");
        assert_eq!((icmp[34], icmp[35]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[40], icmp[41]]), 1450);
        assert_eq!(&icmp[..6], &mg);
        assert!(sw.stats().contains(&("icmp_frag_needed", 1)));
        // What fits goes through.
        assert!(!sw.switch_in(now, g, &ipv4_frame(mu, mg, 1000, 2000, 1450), gw.dhcp()));
        assert_eq!(seen_u.borrow().len(), 1);
        // A DHCP server message from the gateway's address on the uplink: dropped, unless the uplink
        // is trusted.
        let mut offer = ipv4_frame(mg, mu, 67, 68, 300);
        offer[26..30].copy_from_slice(&[10, 0, 2, 2]);
        let before = seen_g.borrow().len();
        sw.switch_in(now, u, &offer, gw.dhcp());
        assert_eq!(seen_g.borrow().len(), before);
        assert!(sw.port_counters(u).is_some_and(|c| c.drop_spoofed == 1));
        sw.trust_port(u);
        sw.switch_in(now, u, &offer, gw.dhcp());
        assert_eq!(seen_g.borrow().len(), before + 1);
        // --no-gateway: broadcasts are not for the gateway, and the real gateway's MAC (behind the
        // uplink) is an ordinary MAC.
        assert!(sw.switch_in(now, g, &frame([0xff; 6], mg), gw.dhcp()));
        sw.set_no_gateway();
        assert!(!sw.switch_in(now, g, &frame([0xff; 6], mg), gw.dhcp()));
        assert!(!sw.switch_in(now, u, &frame(mg, gw.mac()), gw.dhcp()));
        assert!(sw.port_counters(u).is_some_and(|c| c.drop_refused == 0));
    }

    #[test]
    fn ports_are_numbered_from_zero_and_custom_transmits_get_frames() {
        let queue = Arc::new(ReadyQueue::default());
        let reactor: Reactor<u32> = Reactor::new(queue.clone());
        let gw = Gateway::new(netstack::config::Config::default(), 7);
        let mut sw = Switch::new(
            queue,
            reactor.stopper(),
            &gw,
            &LanOptions::default(),
            false,
            None,
        );
        let (seen_a, seen_b) = (Rc::default(), Rc::default());
        let a = sw.add_port(
            "a".into(),
            Tx::Custom(Box::new(Record(Rc::clone(&seen_a)))),
            9000,
        );
        let b = sw.add_port(
            "b".into(),
            Tx::Custom(Box::new(Record(Rc::clone(&seen_b)))),
            9000,
        );
        assert_eq!((a.number(), b.number()), (0, 1));
        let (ma, mb) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let now = Instant::now();
        // A broadcast from a floods to b (and the gateway must see it); b's reply is unicast to a.
        assert!(sw.switch_in(now, a, &frame([0xff; 6], ma), gw.dhcp()));
        assert_eq!(seen_b.borrow().len(), 1);
        assert!(!sw.switch_in(now, b, &frame(ma, mb), gw.dhcp()));
        assert_eq!(seen_a.borrow().len(), 1);
        // The gateway's frame to b goes to b only.
        assert!(sw.gateway_out(now, &frame(mb, gw.mac())));
        assert_eq!((seen_a.borrow().len(), seen_b.borrow().len()), (1, 2));
        // A closed port's number is reused; its old key finds nothing.
        sw.close_port(a, "test");
        assert!(!sw.port_exists(a));
        let c = sw.add_port(
            "c".into(),
            Tx::Custom(Box::new(Record(Rc::default()))),
            9000,
        );
        assert_eq!(c.number(), 0);
        assert_ne!(a, c);
        assert!(!sw.switch_in(now, a, &frame([0xff; 6], ma), gw.dhcp()));
        assert_eq!(sw.port_counters(b).map(|c| c.frames_in), Some(1));
    }

    /// An IPv6 frame `dst` <- `src` from address `from` carrying ICMPv6 `icmp` (checksum not set:
    /// the switch does not look at it).
    fn ipv6_frame(dst: Mac, src: Mac, from: std::net::Ipv6Addr, icmp: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40];
        ethernet::write_header(&mut f, dst, src, ethernet::ETHERTYPE_IPV6);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&(icmp.len() as u16).to_be_bytes());
        f[20] = 58;
        f[21] = 255;
        f[22..38].copy_from_slice(&from.octets());
        f[38..54].copy_from_slice(&std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets());
        f.extend_from_slice(icmp);
        f
    }

    fn na6(target: std::net::Ipv6Addr) -> Vec<u8> {
        let mut m = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
        m.extend_from_slice(&target.octets());
        m
    }

    #[test]
    fn ipv6_source_guard_router_addresses_and_other_guests() {
        let queue = Arc::new(ReadyQueue::default());
        let reactor: Reactor<u32> = Reactor::new(queue.clone());
        let gw = Gateway::new(netstack::config::Config::default(), 7);
        let mut sw = Switch::new(
            queue,
            reactor.stopper(),
            &gw,
            &LanOptions::default(),
            false,
            None,
        );
        let (seen_a, seen_b) = (Rc::<RefCell<Vec<Vec<u8>>>>::default(), Rc::default());
        let a = sw.add_port(
            "a".into(),
            Tx::Custom(Box::new(Record(Rc::clone(&seen_a)))),
            9000,
        );
        let b = sw.add_port(
            "b".into(),
            Tx::Custom(Box::new(Record(Rc::clone(&seen_b)))),
            9000,
        );
        let (ma, mb) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let all = [0x33, 0x33, 0, 0, 0, 1];
        let now = Instant::now();
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        let (ga, gb) = (v6("fec0::a"), v6("fec0::b"));
        let ll_gw = netstack::addr6::link_local(&gw.mac());
        // a's own unsolicited NA, from its own address: reaches b (and binds fec0::a to a).
        sw.switch_in(now, a, &ipv6_frame(all, ma, ga, &na6(ga)), gw.dhcp());
        assert_eq!(seen_b.borrow().len(), 1);
        sw.switch_in(now, b, &ipv6_frame(all, mb, gb, &na6(gb)), gw.dhcp());
        assert_eq!(seen_a.borrow().len(), 1);
        let spoofed = |sw: &Switch, p| sw.port_counters(p).map_or(0, |c| c.drop_spoofed);
        // b claims the router's global and link-local addresses, the DNS address, a's address (as
        // an NA target and as its source): dropped and counted, a sees none of it.
        for f in [
            ipv6_frame(all, mb, gb, &na6(v6("fec0::2"))),
            ipv6_frame(all, mb, gb, &na6(ll_gw)),
            ipv6_frame(all, mb, v6("fec0::3"), &[128, 0, 0, 0, 0, 1, 0, 1]),
            ipv6_frame(all, mb, ll_gw, &[128, 0, 0, 0, 0, 1, 0, 1]),
            ipv6_frame(all, mb, gb, &na6(ga)),
            ipv6_frame(ma, mb, ga, &[128, 0, 0, 0, 0, 1, 0, 1]),
            ipv6_frame(all, mb, v6("ff02::1"), &[128, 0, 0, 0, 0, 1, 0, 1]),
        ] {
            sw.switch_in(now, b, &f, gw.dhcp());
        }
        assert_eq!(seen_a.borrow().len(), 1, "nothing reached a");
        assert_eq!(spoofed(&sw, b), 7);
        // DAD from the unspecified address is fine; so are addresses outside the LAN's prefix
        // (the gateway judges those).
        let mut ns = na6(ga);
        ns[0] = 135;
        sw.switch_in(
            now,
            b,
            &ipv6_frame(all, mb, "::".parse().unwrap(), &ns),
            gw.dhcp(),
        );
        sw.switch_in(
            now,
            b,
            &ipv6_frame(all, mb, v6("2001:db8::1"), &ns),
            gw.dhcp(),
        );
        assert_eq!(seen_a.borrow().len(), 3);
        // A router advert from b never reaches a, wherever it hides it.
        let mut hbh = vec![58u8, 0, 0, 0, 0, 0, 0, 0];
        hbh.extend_from_slice(&[134, 0, 0, 0]);
        let mut ra = ipv6_frame(all, mb, v6("fe80::2:0:0:2"), &hbh);
        ra[20] = 0;
        sw.switch_in(now, b, &ra, gw.dhcp());
        assert_eq!(seen_a.borrow().len(), 3);
        assert_eq!(sw.port_counters(b).map(|c| c.drop_rogue_ra), Some(1));
        // When a's port goes away, its address is free for b.
        sw.close_port(a, "test");
        let c = sw.add_port(
            "c".into(),
            Tx::Custom(Box::new(Record(Rc::default()))),
            9000,
        );
        sw.switch_in(now, b, &ipv6_frame(all, mb, ga, &na6(ga)), gw.dhcp());
        assert_eq!(spoofed(&sw, b), 7);
        assert!(sw.port_counters(c).is_some_and(|c| c.frames_out >= 1));
    }
}
