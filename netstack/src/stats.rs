//! Counters for everything the gateway drops or does. Every drop has a counter.

/// Plain counters; the core increments them, the driver reports them.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Ethernet frames received from guests (every frame handed to the gateway).
    pub frames_in: u64,
    /// Ethernet frames emitted to guests.
    pub frames_out: u64,
    /// Packets dropped because a header or length did not parse (other than a bad checksum).
    pub drop_malformed: u64,
    /// Frames dropped for a wrong IPv4/TCP/UDP/ICMP checksum.
    pub drop_bad_checksum: u64,
    /// Frames not addressed to the gateway's MAC (nor broadcast/multicast), and UDP/ICMP to a destination the gateway does not forward.
    pub drop_not_for_us: u64,
    /// Frames of an EtherType or protocol the gateway does not handle, and replies too large for the MTU.
    pub drop_unsupported: u64,
    /// Frames or ARP claims whose sender address is the gateway's own or is leased to another guest's MAC.
    pub drop_spoofed: u64,
    /// New flows refused because the guest already had `max_flows_per_guest` flows.
    pub drop_flow_limit: u64,
    /// SYNs dropped because the guest already had `max_pending_per_guest` connecting TCP flows.
    pub drop_syn_flood: u64,
    /// UDP datagrams and ICMP echoes dropped because the host socket would block (send buffer full).
    pub drop_tx_queue_full: u64,
    /// ARP replies sent to guests.
    pub arp_replies: u64,
    /// DHCP replies sent to guests.
    pub dhcp_replies: u64,
    /// DHCP messages ignored (malformed or not acceptable, see `dhcp::DhcpError`).
    pub dhcp_bad: u64,
    /// DNS queries received from guests.
    pub dns_queries: u64,
    /// DNS queries from guests or upstream responses dropped as malformed or unexpected.
    pub dns_bad: u64,
    /// SERVFAIL replies sent to guests (no upstream answered in time, or the upstream failed).
    pub dns_servfail: u64,
    /// TCP flows created: a guest SYN to a NATed destination, or an inbound (host-forwarded) connection.
    pub tcp_flows_opened: u64,
    /// TCP flows removed (closed, reset, timed out or failed to connect).
    pub tcp_flows_closed: u64,
    /// Guest connections answered with RST: the destination is refused, or the host connect was refused.
    pub tcp_refused: u64,
    /// Guest connections whose host connect failed otherwise (not refused, not out of fds): answered with ICMP unreachable.
    pub tcp_unreachable: u64,
    /// TCP segments retransmitted to the guest.
    pub tcp_retransmits: u64,
    /// Guest bytes the host socket could not take at once (held until writable).
    pub tcp_host_full: u64,
    /// Host-to-guest sends that stopped at the guest's window.
    pub tcp_guest_window_full: u64,
    /// Host-to-guest sends paused because the guest's link was congested.
    pub tcp_link_paused: u64,
    /// Host reads that found nothing new (then readiness is awaited).
    pub tcp_host_empty: u64,
    /// UDP flows created: a guest datagram to a new destination, or an inbound (host-forwarded) one.
    pub udp_flows_opened: u64,
    /// UDP flows closed after being idle.
    pub udp_flows_expired: u64,
    /// ICMP echo requests sent to the host's ICMP socket.
    pub icmp_echo_sent: u64,
    /// ICMP echo flows not opened because the host refused an ICMP socket (e.g. `net.ipv4.ping_group_range`).
    pub icmp_unavailable: u64,
    /// IPv4 fragments and IPv6 packets with a Fragment header (not reassembled: dropped).
    pub drop_fragment: u64,
    /// Flows to destinations that are never NATed (loopback, 0/8, broadcast, multicast, the LAN).
    pub drop_bad_dest: u64,
    /// New flows refused because the global fd budget was used up.
    pub flows_refused_budget: u64,
    /// Idle UDP/ICMP flows closed to make room under the fd budget.
    pub flows_evicted: u64,
    /// Host sockets that could not be opened: out of fds (EMFILE/ENFILE) or kernel memory.
    pub flows_refused_fd: u64,
    /// Guest addresses not remembered: the neighbour table (or the MAC's share) was full.
    pub neigh_full: u64,
    /// Guest addresses forgotten after being idle.
    pub neigh_expired: u64,
    /// DNS queries dropped: too many pending (per guest or in all).
    pub dns_drop_pending: u64,
    /// guestfwd cmd: connections refused: the guest's children cap was reached.
    pub guestfwd_cmd_refused: u64,
    /// IPv6 frames that reached the gateway.
    pub v6_frames_in: u64,
    /// IPv6 packets neither for the gateway's own services nor for the NATs (other upper-layer
    /// protocols, ICMPv6 other than echo and NDP, echo to multicast): dropped.
    pub v6_dropped: u64,
    /// Malformed IPv6 packets (bad header, extension chain, fragment, checksum).
    pub v6_malformed: u64,
    /// Neighbour advertisements and router advertisements sent.
    pub ndp_sent: u64,
    /// NDP messages refused (hop limit, bad DAD, wrong destination, malformed).
    pub ndp_bad: u64,
    /// Router advertisements from guests (RA guard).
    pub ndp_rogue_ra: u64,
    /// Guests that claimed or probed for one of the gateway's IPv6 addresses.
    pub ndp_conflict: u64,
    /// ICMPv6 echo requests to the router or DNS addresses answered.
    pub icmp6_echo_replies: u64,
    /// DHCPv6 replies (Advertise or Reply) sent to guests.
    pub dhcp6_replies: u64,
    /// DHCPv6 messages ignored (malformed, or a server/relay message type from a guest).
    pub dhcp6_bad: u64,
    /// IPv6 packets above the link MTU, answered with ICMPv6 Packet Too Big.
    pub v6_too_big: u64,
    /// Guest echo requests (either family) answered with a destination unreachable because the
    /// host has no route to the destination.
    pub icmp_unreachable_sent: u64,
}

impl Stats {
    /// Name/value pairs, for the `stats` API and logs.
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("frames_in", self.frames_in),
            ("frames_out", self.frames_out),
            ("drop_malformed", self.drop_malformed),
            ("drop_bad_checksum", self.drop_bad_checksum),
            ("drop_not_for_us", self.drop_not_for_us),
            ("drop_unsupported", self.drop_unsupported),
            ("drop_spoofed", self.drop_spoofed),
            ("drop_flow_limit", self.drop_flow_limit),
            ("drop_syn_flood", self.drop_syn_flood),
            ("drop_tx_queue_full", self.drop_tx_queue_full),
            ("arp_replies", self.arp_replies),
            ("dhcp_replies", self.dhcp_replies),
            ("dhcp_bad", self.dhcp_bad),
            ("dns_queries", self.dns_queries),
            ("dns_bad", self.dns_bad),
            ("dns_servfail", self.dns_servfail),
            ("tcp_flows_opened", self.tcp_flows_opened),
            ("tcp_flows_closed", self.tcp_flows_closed),
            ("tcp_refused", self.tcp_refused),
            ("tcp_unreachable", self.tcp_unreachable),
            ("tcp_retransmits", self.tcp_retransmits),
            ("tcp_host_full", self.tcp_host_full),
            ("tcp_guest_window_full", self.tcp_guest_window_full),
            ("tcp_link_paused", self.tcp_link_paused),
            ("tcp_host_empty", self.tcp_host_empty),
            ("udp_flows_opened", self.udp_flows_opened),
            ("udp_flows_expired", self.udp_flows_expired),
            ("icmp_echo_sent", self.icmp_echo_sent),
            ("icmp_unavailable", self.icmp_unavailable),
            ("drop_fragment", self.drop_fragment),
            ("drop_bad_dest", self.drop_bad_dest),
            ("flows_refused_budget", self.flows_refused_budget),
            ("flows_evicted", self.flows_evicted),
            ("flows_refused_fd", self.flows_refused_fd),
            ("neigh_full", self.neigh_full),
            ("neigh_expired", self.neigh_expired),
            ("dns_drop_pending", self.dns_drop_pending),
            ("guestfwd_cmd_refused", self.guestfwd_cmd_refused),
            ("v6_frames_in", self.v6_frames_in),
            ("v6_dropped", self.v6_dropped),
            ("v6_malformed", self.v6_malformed),
            ("ndp_sent", self.ndp_sent),
            ("ndp_bad", self.ndp_bad),
            ("ndp_rogue_ra", self.ndp_rogue_ra),
            ("ndp_conflict", self.ndp_conflict),
            ("icmp6_echo_replies", self.icmp6_echo_replies),
            ("dhcp6_replies", self.dhcp6_replies),
            ("dhcp6_bad", self.dhcp6_bad),
            ("v6_too_big", self.v6_too_big),
            ("icmp_unreachable_sent", self.icmp_unreachable_sent),
        ]
    }
}
