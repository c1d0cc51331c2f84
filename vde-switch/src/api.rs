//! The control socket (`--api PATH`): slirp4netns' JSON protocol (`add_hostfwd`, `list_hostfwd`,
//! `remove_hostfwd`) plus `list_leases` and `stats`, one request per connection. Forwards added here
//! or on the command line live in one table; changes take effect at once and do not touch other
//! connections.

use crate::server::{clear_ready, poll_ready, register, Endpoint, Keep, Server};
use netstack::driver::Driver;
use netstack::flow::Proto as FlowProto;
use rustc_hash::FxHashMap;
use slirp_compat::api::{self, ApiBackend, HostFwdEntry, HostFwdTable, LeaseInfo, MAX_REQUEST};
use slirp_compat::hostfwd::Proto;
use socket2::{SockRef, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Instant;
use tokio::io::unix::AsyncFd;

/// Forwards: the API's table (ids as clients see them) and the driver's forward for each.
#[derive(Default)]
pub struct Forwards {
    pub table: HostFwdTable,
    driver_ids: FxHashMap<(Proto, SocketAddr), u32>,
    /// The guest of a forward that names none (`None`: the first DHCP lease).
    default_guest: Option<std::net::Ipv4Addr>,
}

pub struct ApiListener {
    fd: AsyncFd<OwnedFd>,
}

pub struct ApiConn {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
    opened: Instant,
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

impl ApiBackend for Backend<'_> {
    fn default_guest(&self) -> IpAddr {
        IpAddr::V4(
            self.default_guest
                .unwrap_or(self.driver.gw.config().dhcp_start),
        )
    }
    fn open_hostfwd(
        &mut self,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
    ) -> Result<(), String> {
        let id = self
            .driver
            .add_forward(flow_proto(proto), host, guest)
            .map_err(|e| e.to_string())?;
        self.driver_ids.insert((proto, host), id);
        log::info!("forwarding {proto} {host} -> {guest}");
        Ok(())
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
        self.driver
            .gw
            .dhcp()
            .leases()
            .iter()
            .map(|l| LeaseInfo::from_lease(l, self.now))
            .collect()
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

impl Server {
    /// The guest of forwards that name none (the API's `add_hostfwd` without `guest_addr`).
    pub fn set_default_guest(&mut self, ip: std::net::Ipv4Addr) {
        self.forwards.default_guest = Some(ip);
    }

    /// Adds a forward (command line or API): checked against the table, bound, then recorded.
    pub fn add_hostfwd(
        &mut self,
        driver: &mut Driver,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
    ) -> Result<u32, String> {
        let f = &mut self.forwards;
        f.table.check(proto, host).map_err(|e| e.desc)?;
        let mut backend = Backend {
            default_guest: f.default_guest,
            driver,
            driver_ids: &mut f.driver_ids,
            now: Instant::now(),
            switch: Vec::new(),
        };
        backend.open_hostfwd(proto, host, guest)?;
        f.table.add(proto, host, guest).map_err(|e| e.desc)
    }

    /// Listens for API clients at `path`.
    pub fn listen_api(&mut self, path: &Path) -> io::Result<()> {
        let s = crate::server::bind_unix(path, Type::STREAM)?;
        s.listen(16)?;
        s.set_nonblocking(true)?;
        let fd = register(OwnedFd::from(s))?;
        self.remove_on_exit(path.to_path_buf());
        self.add_endpoint(Endpoint::ApiListener(ApiListener { fd }));
        Ok(())
    }

    pub(crate) fn api_accept(&mut self, idx: usize, l: &mut ApiListener) -> Keep {
        let (waker, tok) = self.endpoint_waker(idx);
        loop {
            if !poll_ready(&l.fd, &waker, false) {
                return Keep::Yes;
            }
            match SockRef::from(l.fd.get_ref()).accept() {
                Ok((s, _)) => {
                    if let Err(e) = self.add_api_conn(s) {
                        log::warn!("API: cannot take a connection: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    clear_ready(&l.fd, &waker, false, &self.queue, tok);
                    return Keep::Yes;
                }
                Err(e) => {
                    log::warn!("API accept failed: {e}");
                    return Keep::Yes;
                }
            }
        }
    }

    fn add_api_conn(&mut self, s: Socket) -> io::Result<()> {
        s.set_nonblocking(true)?;
        let fd = register(OwnedFd::from(s))?;
        self.add_endpoint(Endpoint::ApiConn(ApiConn {
            fd,
            buf: Vec::new(),
            opened: Instant::now(),
        }));
        Ok(())
    }

    /// Reads one request (until EOF, or as soon as the bytes form a complete JSON value), answers it and
    /// closes the connection.
    pub(crate) fn api_readable(
        &mut self,
        idx: usize,
        c: &mut ApiConn,
        driver: &mut Driver,
    ) -> Keep {
        let (waker, tok) = self.endpoint_waker(idx);
        let mut eof = false;
        loop {
            if !poll_ready(&c.fd, &waker, false) {
                break;
            }
            let mut chunk = [0u8; 4096];
            let r = match rustix::net::recv(&c.fd, &mut chunk, rustix::net::RecvFlags::DONTWAIT) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::AGAIN) => {
                    clear_ready(&c.fd, &waker, false, &self.queue, tok);
                    break;
                }
                Err(_) => return Keep::No,
            };
            if r == 0 {
                eof = true;
                break;
            }
            c.buf.extend_from_slice(&chunk[..r]);
            if c.buf.len() > MAX_REQUEST {
                break;
            }
        }
        let complete = serde_json::from_slice::<serde_json::Value>(&c.buf).is_ok();
        if !(eof || complete || c.buf.len() > MAX_REQUEST) {
            if c.opened.elapsed().as_secs() > 10 {
                return Keep::No;
            }
            return Keep::Yes;
        }
        if c.buf.is_empty() {
            return Keep::No;
        }
        if let Some(reply) = self.vxlan_api(&c.buf) {
            write_all_nonblocking(c.fd.get_ref(), &reply);
            return Keep::No;
        }
        let switch = self.switch_stats();
        let f = &mut self.forwards;
        let mut backend = Backend {
            default_guest: f.default_guest,
            driver,
            driver_ids: &mut f.driver_ids,
            now: Instant::now(),
            switch,
        };
        let reply = api::handle_request(&c.buf, &mut f.table, &mut backend);
        write_all_nonblocking(c.fd.get_ref(), &reply);
        Keep::No
    }
}

/// Writes a small reply; the client reads it before anything else happens, so a brief blocking wait
/// (bounded) is acceptable.
fn write_all_nonblocking(fd: &OwnedFd, mut data: &[u8]) {
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    while !data.is_empty() && Instant::now() < deadline {
        use rustix::net::SendFlags;
        match rustix::net::send(fd, data, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(n) if n > 0 => data = &data[n..],
            Err(rustix::io::Errno::AGAIN) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            _ => return,
        }
    }
}
