//! The gateway's address plan and settings. Defaults follow slirp (QEMU `-netdev user`).

use crate::addr6::Plan6;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Why a network or a configuration was rejected (one line each, shown to users as is).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("prefix /{0} leaves no room for guests (at most /30)")]
    /// The prefix length is above /30.
    PrefixTooLong(u8),
    #[error("bad prefix length in {0:?}")]
    /// The prefix after `/` is not a number.
    BadPrefix(String),
    #[error("bad IPv4 address in {0:?}")]
    /// The address part does not parse as IPv4.
    BadAddress(String),
    #[error("{name} address {ip} is outside {net}/{prefix}")]
    /// The gateway address or the DHCP start lies outside the network.
    Outside {
        /// Which setting (e.g. `gateway`).
        name: &'static str,
        /// The offending address.
        ip: Ipv4Addr,
        /// The network address.
        net: Ipv4Addr,
        /// The network's prefix length.
        prefix: u8,
    },
    #[error("{name} address {ip} is the network or broadcast address")]
    /// An address is the network's own or its broadcast address.
    NetworkOrBroadcast {
        /// Which setting (e.g. `gateway`).
        name: &'static str,
        /// The offending address.
        ip: Ipv4Addr,
    },
    #[error("guestfwd address {0} must be a free address inside the network")]
    /// The guestfwd address is not a free address inside the network.
    GuestFwdAddress(Ipv4Addr),
    #[error("dns address {0} cannot be reached through the gateway (unspecified, loopback, multicast or reserved)")]
    /// The DNS address is unspecified, loopback, multicast or reserved.
    DnsUnreachable(Ipv4Addr),
    #[error("gateway and DNS addresses must differ")]
    /// The gateway and DNS addresses are the same.
    GatewayIsDns,
    #[error("MTU {0} out of range 576..=65520")]
    /// The MTU is outside 576..=65520.
    Mtu(u16),
    #[error("IPv4 and IPv6 cannot both be off")]
    /// `ipv4` is off and there is no IPv6 plan: the gateway would serve nothing.
    NoFamily,
}

/// For callers that report errors as one-line strings.
impl From<ConfigError> for String {
    fn from(e: ConfigError) -> Self {
        e.to_string()
    }
}

/// An IPv4 network: address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    /// The network address (host bits cleared by [`Ipv4Net::new`]).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=30.
    pub prefix: u8,
}

impl Ipv4Net {
    /// Makes a network from an address (host bits are cleared) and a prefix length; refuses prefixes above /30.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, ConfigError> {
        if prefix > 30 {
            return Err(ConfigError::PrefixTooLong(prefix));
        }
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask_bits(prefix)),
            prefix,
        })
    }
    fn mask_bits(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }
    /// The netmask, e.g. 255.255.255.0 for /24.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_bits(self.prefix))
    }
    /// The network address (same as `addr`).
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }
    /// The broadcast address (all host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !Self::mask_bits(self.prefix))
    }
    /// Whether `ip` lies inside the network (network and broadcast included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_bits(self.prefix) == u32::from(self.addr)
    }
    /// Parses `A.B.C.D/N` (a bare address means /24, as slirp's `net=` does).
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (
                a,
                p.parse::<u8>()
                    .map_err(|_| ConfigError::BadPrefix(s.to_string()))?,
            ),
            None => (s, 24),
        };
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| ConfigError::BadAddress(s.to_string()))?;
        Self::new(addr, p)
    }
}

/// Where a guestfwd's connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestFwdTarget {
    /// Connect to this host address.
    Connect(SocketAddr),
    /// Run this shell command with the connection on its stdin/stdout.
    Command(String),
}

/// A guestfwd: connections from guests to `addr:port` (a virtual address in the LAN) go to `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFwd {
    /// The virtual address guests connect to.
    pub addr: Ipv4Addr,
    /// The TCP port guests connect to.
    pub port: u16,
    /// Where the connections go.
    pub target: GuestFwdTarget,
}

/// Everything the gateway needs to know. Construct with [`Config::default`] and adjust.
#[derive(Clone, Debug)]
pub struct Config {
    /// The virtual LAN (default 10.0.2.0/24).
    pub net: Ipv4Net,
    /// The gateway's address (default 10.0.2.2); maps to the host's 127.0.0.1 unless `host_loopback` is off.
    pub gateway: Ipv4Addr,
    /// The DNS forwarder's address (default 10.0.2.3).
    pub dns: Ipv4Addr,
    /// First DHCP lease (default 10.0.2.15).
    pub dhcp_start: Ipv4Addr,
    /// Last DHCP lease (`--dhcp-range`; default: the end of the network).
    pub dhcp_end: Option<Ipv4Addr>,
    /// The gateway's MAC address (slirp uses 52:55:0a:00:02:02).
    pub gateway_mac: [u8; 6],
    /// Link MTU (default 1500, up to 65520).
    pub mtu: u16,
    /// Whether the gateway address reaches the host's loopback.
    pub host_loopback: bool,
    /// Upstream DNS servers; empty means "use /etc/resolv.conf".
    pub dns_upstreams: Vec<SocketAddr>,
    /// DHCP option 119 domain search list.
    pub dns_search: Vec<String>,
    /// DHCP option 15 domain name.
    pub domain_name: Option<String>,
    /// DHCP lease time.
    pub lease_time: Duration,
    /// How long a DNS query waits for an upstream before SERVFAIL (tried across upstreams).
    pub dns_timeout: Duration,
    /// Most simultaneous NAT flows (TCP+UDP+ICMP) per guest address.
    pub max_flows_per_guest: usize,
    /// Most simultaneous NAT flows in all guests together: the fd budget for flows (each flow holds
    /// one host socket). `warren` derives it from RLIMIT_NOFILE (see `flow::flow_limits`).
    pub max_flows_total: usize,
    /// Most half-open (connecting) TCP flows per guest, a SYN flood bound.
    pub max_pending_per_guest: usize,
    /// Most `guestfwd ... cmd:` children running at once per guest.
    pub max_cmd_per_guest: usize,
    /// Most guest addresses remembered (address → MAC); at most the LAN's size is ever used.
    pub neigh_max: usize,
    /// Most addresses one MAC may be remembered with.
    pub neigh_max_per_mac: usize,
    /// A guest address not heard from this long is forgotten.
    pub neigh_idle: Duration,
    /// Most DNS queries of one guest waiting for upstreams at once.
    pub dns_max_pending_per_guest: usize,
    /// UDP flow idle timeout.
    pub udp_idle: Duration,
    /// ICMP echo flow idle timeout.
    pub icmp_idle: Duration,
    /// Guests may not open outbound connections (QEMU `restrict=on`): only the gateway's services,
    /// forwards and guestfwds work.
    pub restrict: bool,
    /// Virtual services in the LAN that lead to host addresses or commands.
    pub guestfwds: Vec<GuestFwd>,
    /// The IPv6 side of the LAN (NDP, router advertisements, DHCPv6); `None` = IPv4 only
    /// (`--no-ipv6`). Default: slirp's plan `fec0::/64`, router `::2`, DNS `::3`. The plan's MAC
    /// and link-local address follow `gateway_mac` when the gateway starts.
    pub v6: Option<Plan6>,
    /// Whether the gateway serves IPv4 (ARP, DHCP, DNS and NAT over IPv4). `false` (`--no-ipv4`,
    /// slirp's `ipv4=off`): IPv4 and ARP frames to the gateway are dropped (counted as
    /// `drop_unsupported`) and it sends none; IPv6 is unaffected. Default `true`.
    pub ipv4: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            net: Ipv4Net {
                addr: Ipv4Addr::new(10, 0, 2, 0),
                prefix: 24,
            },
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            dns: Ipv4Addr::new(10, 0, 2, 3),
            dhcp_start: Ipv4Addr::new(10, 0, 2, 15),
            dhcp_end: None,
            gateway_mac: [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02],
            mtu: 1500,
            host_loopback: true,
            dns_upstreams: Vec::new(),
            dns_search: Vec::new(),
            domain_name: None,
            lease_time: Duration::from_secs(86400),
            dns_timeout: Duration::from_secs(5),
            max_flows_per_guest: 4096,
            max_flows_total: 65536,
            max_pending_per_guest: 256,
            max_cmd_per_guest: 16,
            neigh_max: 4096,
            neigh_max_per_mac: 64,
            neigh_idle: Duration::from_secs(300),
            dns_max_pending_per_guest: 256,
            udp_idle: Duration::from_secs(120),
            icmp_idle: Duration::from_secs(30),
            restrict: false,
            guestfwds: Vec::new(),
            v6: Some(Plan6::slirp([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02])),
            ipv4: true,
        }
    }
}

impl Config {
    /// Checks that the addresses agree with each other. Returns a one-line reason on failure.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, ip) in [
            ("gateway", self.gateway),
            ("dns", self.dns),
            ("dhcp start", self.dhcp_start),
        ] {
            // The DNS address may also lie outside the network, reached through the gateway
            // (pasta's `--dns-forward 169.254.1.1`, podman 5's default): any unicast address.
            if name == "dns" && !self.net.contains(ip) {
                if ip.octets()[0] == 0
                    || ip.is_loopback()
                    || ip.is_multicast()
                    || ip.octets()[0] >= 240
                {
                    return Err(ConfigError::DnsUnreachable(ip));
                }
                continue;
            }
            if !self.net.contains(ip) {
                return Err(ConfigError::Outside {
                    name,
                    ip,
                    net: self.net.addr,
                    prefix: self.net.prefix,
                });
            }
            if ip == self.net.network() || ip == self.net.broadcast() {
                return Err(ConfigError::NetworkOrBroadcast { name, ip });
            }
        }
        // A guestfwd may sit on the gateway's address (pasta's -T: gateway:P to a host port).
        for g in &self.guestfwds {
            if !self.net.contains(g.addr)
                || [self.dns, self.net.network(), self.net.broadcast()].contains(&g.addr)
            {
                return Err(ConfigError::GuestFwdAddress(g.addr));
            }
        }
        if self.gateway == self.dns {
            return Err(ConfigError::GatewayIsDns);
        }
        if !(576..=65520).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        if !self.ipv4 && self.v6.is_none() {
            return Err(ConfigError::NoFamily);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Gateway;
    use crate::testkit::{frame, udp_packet, Rec, GUEST_MAC};
    use crate::wire::arp::{self, ArpRepr};
    use crate::wire::ethernet;
    use crate::wire::icmpv6::{Icmpv6Repr, NdpRepr};
    use crate::wire::ipv6::{solicited_node, Ipv6Repr, NH_ICMPV6};
    use crate::Instant;
    use std::net::Ipv6Addr;

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; ethernet::HEADER_LEN + arp::LEN];
        ethernet::write_header(
            &mut f,
            ethernet::BROADCAST,
            GUEST_MAC,
            ethernet::ETHERTYPE_ARP,
        );
        ArpRepr {
            op: arp::OP_REQUEST,
            sender_mac: GUEST_MAC,
            sender_ip: Ipv4Addr::new(10, 0, 2, 15),
            target_mac: [0; 6],
            target_ip: target,
        }
        .emit(&mut f[ethernet::HEADER_LEN..]);
        f
    }

    fn neighbour_solicit(target: Ipv6Addr) -> Vec<u8> {
        let src = crate::addr6::link_local(&GUEST_MAC);
        let dst = solicited_node(&target);
        let m = Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
            target,
            source_lladdr: Some(GUEST_MAC),
        })
        .to_bytes(src, dst);
        let p = Ipv6Repr::new(src, dst, NH_ICMPV6, m.len() as u16, 255).packet(&m);
        let mut f = vec![0u8; ethernet::HEADER_LEN + p.len()];
        f[ethernet::HEADER_LEN..].copy_from_slice(&p);
        let o = dst.octets();
        let mcast = [0x33, 0x33, o[12], o[13], o[14], o[15]];
        ethernet::write_header(&mut f, mcast, GUEST_MAC, ethernet::ETHERTYPE_IPV6);
        f
    }

    /// A DHCP DISCOVER's bytes are not needed: any UDP to port 67 from 0.0.0.0 would be DHCP.
    fn udp_to_dns() -> Vec<u8> {
        frame(
            &udp_packet(
                4444,
                SocketAddr::from((Ipv4Addr::new(10, 0, 2, 3), 53)),
                b"query",
            ),
            0,
        )
    }

    #[test]
    fn ipv4_off_answers_nothing_on_ipv4_and_ipv6_still_works() {
        let now = Instant::now();
        for ipv4 in [true, false] {
            let cfg = Config {
                ipv4,
                ..Config::default()
            };
            assert_eq!(cfg.validate(), Ok(()));
            let router = cfg.v6.as_ref().expect("v6 on by default").router;
            let mut g = Gateway::new(cfg, 7);
            let mut io = Rec::default();
            g.handle_frame(now, &arp_request(Ipv4Addr::new(10, 0, 2, 2)), &mut io);
            assert_eq!(
                io.take_frames().len(),
                usize::from(ipv4),
                "ARP reply iff IPv4 on"
            );
            let dropped = g.stats().drop_unsupported;
            g.handle_frame(now, &udp_to_dns(), &mut io);
            if !ipv4 {
                assert_eq!(g.stats().drop_unsupported, dropped + 1, "counted drop");
                assert!(io.take_frames().is_empty() && io.calls.is_empty());
            }
            g.handle_frame(now, &neighbour_solicit(router), &mut io);
            let out = io.take_frames();
            assert_eq!(out.len(), 1, "the router's NA, IPv4 on or off");
            assert_eq!(&out[0][12..14], &ethernet::ETHERTYPE_IPV6.to_be_bytes());
        }
    }

    #[test]
    fn both_families_off_is_refused() {
        let cfg = Config {
            ipv4: false,
            v6: None,
            ..Config::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::NoFamily));
    }
}
