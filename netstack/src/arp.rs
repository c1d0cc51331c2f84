//! ARP: the gateway answers for its own addresses (gateway and DNS) and nothing else.

use crate::gateway::Gateway;
use crate::host::HostIo;
use crate::neigh::Learned;
use crate::wire::arp::{self, ArpRepr};
use crate::wire::ethernet::{self, Frame};
use crate::Instant;
use std::net::IpAddr;

impl Gateway {
    pub(crate) fn handle_arp(&mut self, now: Instant, eth: &Frame<'_>, io: &mut dyn HostIo) {
        let a = match ArpRepr::parse(eth.payload()) {
            Ok(a) => a,
            Err(e) => return self.bad(now, "arp", e),
        };
        let (sender_virtual, target_virtual) =
            (self.is_virtual(a.sender_ip), self.is_virtual(a.target_ip));
        if sender_virtual {
            // Somebody claims the gateway's or DNS address: never learn it.
            self.stats.drop_spoofed += 1;
            let m = ethernet::fmt_mac(&a.sender_mac);
            let ip = a.sender_ip;
            self.note(now, || {
                format!("dropped ARP from {m} claiming the gateway's address {ip}")
            });
            return;
        }
        if self.cfg.net.contains(a.sender_ip)
            && !a.sender_ip.is_unspecified()
            && a.sender_mac == eth.src()
            && !self.learn_neighbour(now, IpAddr::V4(a.sender_ip), a.sender_mac, io)
        {
            // Claims an address leased to another MAC: no answer either.
            return;
        }
        if a.op != arp::OP_REQUEST || !target_virtual {
            return;
        }
        let reply = ArpRepr {
            op: arp::OP_REPLY,
            sender_mac: self.cfg.gateway_mac,
            sender_ip: a.target_ip,
            target_mac: a.sender_mac,
            target_ip: a.sender_ip,
        };
        let mut buf = [0u8; ethernet::HEADER_LEN + arp::LEN];
        ethernet::write_header(
            &mut buf,
            eth.src(),
            self.cfg.gateway_mac,
            ethernet::ETHERTYPE_ARP,
        );
        reply.emit(&mut buf[ethernet::HEADER_LEN..]);
        io.transmit(&buf);
        self.stats.arp_replies += 1;
        self.stats.frames_out += 1;
    }

    /// Asks the LAN who has `ip` (a guest a forward wants to reach before it has sent anything).
    pub(crate) fn send_arp_request(&mut self, ip: std::net::Ipv4Addr, io: &mut dyn HostIo) {
        let req = ArpRepr {
            op: arp::OP_REQUEST,
            sender_mac: self.cfg.gateway_mac,
            sender_ip: self.cfg.gateway,
            target_mac: [0; 6],
            target_ip: ip,
        };
        let mut buf = [0u8; ethernet::HEADER_LEN + arp::LEN];
        ethernet::write_header(
            &mut buf,
            ethernet::BROADCAST,
            self.cfg.gateway_mac,
            ethernet::ETHERTYPE_ARP,
        );
        req.emit(&mut buf[ethernet::HEADER_LEN..]);
        io.transmit(&buf);
        self.stats.frames_out += 1;
    }

    /// Records that `ip` uses `mac`; flows that were waiting to learn it go ahead. Returns false (and
    /// counts `drop_spoofed`) when `ip` is leased by DHCP to a different MAC: no MAC takes over an
    /// address another holds a lease for. A full table only means the address is not remembered
    /// (`neigh_full`); leased addresses are found through their lease anyway.
    pub(crate) fn learn_neighbour(
        &mut self,
        now: Instant,
        ip: IpAddr,
        mac: crate::Mac,
        io: &mut dyn HostIo,
    ) -> bool {
        if self.neigh.get(&ip) != Some(mac) {
            if let IpAddr::V4(v4) = ip {
                if self.dhcp.mac_for_ip(v4).is_some_and(|m| m != mac) {
                    self.stats.drop_spoofed += 1;
                    let m = ethernet::fmt_mac(&mac);
                    self.note(now, || {
                        format!("dropped a packet from {m} claiming {ip}, leased to another guest")
                    });
                    return false;
                }
            }
        }
        match self.neigh.learn(now, ip, mac, false) {
            Learned::Same => {}
            Learned::Full => self.stats.neigh_full += 1,
            Learned::New => {
                if !self.tcp.arp_waiting_is_empty() {
                    self.tcp_neighbour_known(ip, mac, io);
                }
            }
        }
        true
    }
}
