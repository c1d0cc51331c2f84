//! The event loop: front ends, the switch and the gateway driver on one thread.
//!
//! [`Server`] owns the three pieces and wires them: the reactor (`reactor.rs`: which front end a token
//! names), the switch (`switch/`: ports, MAC table, guards) and the front ends (`frontend/`), which
//! it sets up from [`ServerOptions`] and runs through their [`FrontEnd`] trait with a [`Context`].
//! The gateway's own tokens (its sockets, timers) go to the driver, whose frames go to the switch.

use crate::atexit::AtExitList;
use crate::forwards::{ForwardError, Forwards};
use crate::frontend::{self, Context, FrontEnd, Host};
use crate::reactor::{classify, Driver, FrontEndId, Reactor, Ready, ReadyQueue, Waiter};
use crate::switch::port::PortId;
use crate::switch::Switch;
use netstack_driver::pcap::PcapWriter;
use slirp_compat::hostfwd::Proto;
use socket2::Socket;
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::frontend::stream::Listen;
pub use crate::switch::LanOptions;

/// What to serve.
#[derive(Default)]
pub struct ServerOptions {
    pub listen: Vec<Listen>,
    pub pcap: Option<PathBuf>,
    /// Unix datagram sockets for QEMU `-netdev dgram` (see `frontend/dgram.rs`).
    pub dgram: Vec<PathBuf>,
    /// A dgram peer silent this long loses its port (zero: [`crate::frontend::dgram::IDLE`]).
    pub dgram_idle: Duration,
    /// vhost-user sockets for QEMU `-netdev vhost-user` (see `frontend/vhost_user.rs`).
    pub vhost_user: Vec<PathBuf>,
    /// VDE2 switch directories (see `frontend/vde.rs`).
    pub vde: Vec<crate::frontend::vde::VdeOptions>,
    /// Guests reach only the gateway, not each other.
    pub isolate: bool,
    /// Storm control and table bounds.
    pub lan: LanOptions,
}

/// Everything on the loop's thread.
pub struct Server {
    reactor: Reactor<dyn FrontEnd>,
    switch: Switch,
    /// Host forwards (command line and API).
    forwards: Forwards,
    /// Files and directories removed when the server stops.
    at_exit: AtExitList,
}

impl Server {
    /// Sets up every front end `opts` names. `queue` must be the queue the driver was built with.
    pub fn bind(queue: Arc<ReadyQueue>, driver: &Driver, opts: &ServerOptions) -> io::Result<Self> {
        let pcap = match &opts.pcap {
            Some(p) => {
                let f = File::create(p).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot create pcap file {}: {e}", p.display()),
                    )
                })?;
                Some(PcapWriter::new(BufWriter::with_capacity(1 << 20, f))?)
            }
            None => None,
        };
        let reactor = Reactor::new(queue.clone());
        let switch = Switch::new(
            queue,
            reactor.stopper(),
            &driver.gw,
            &opts.lan,
            opts.isolate,
            pcap,
        );
        let mut s = Server {
            reactor,
            switch,
            forwards: Forwards::default(),
            at_exit: AtExitList::default(),
        };
        // The front ends, from the options.
        let h = &mut s.host();
        for l in &opts.listen {
            frontend::stream::listen(h, l)?;
        }
        for path in &opts.dgram {
            frontend::dgram::bind(h, path, opts.dgram_idle)?;
        }
        for v in &opts.vde {
            frontend::vde::bind(h, v)?;
        }
        for path in &opts.vhost_user {
            frontend::vhost_user::bind(h, path)?;
        }
        Ok(s)
    }

    /// What a front end may touch while it is set up (`frontend::…::bind(&mut server.host(), …)`).
    pub fn host(&mut self) -> Host<'_> {
        Host {
            reactor: &mut self.reactor,
            switch: &mut self.switch,
            at_exit: &mut self.at_exit,
        }
    }

    /// Also removes directory `path` (if empty) when the server stops.
    pub fn remove_dir_on_exit(&mut self, path: PathBuf) {
        self.at_exit.dir(path);
    }

    /// Also removes `path` when the server stops.
    pub fn remove_on_exit(&mut self, path: PathBuf) {
        self.at_exit.file(path);
    }

    /// Adds a connected stream socket (QEMU framing) as a port.
    pub fn add_stream(&mut self, s: Socket, name: String) -> io::Result<PortId> {
        frontend::stream::add_stream(&mut self.host(), s, name)
    }

    /// Listens for control-socket clients at `path`.
    pub fn listen_api(&mut self, path: &Path) -> io::Result<()> {
        frontend::api::listen(&mut self.host(), path)
    }

    /// Stops the server when `fd` becomes readable (`what` is logged).
    pub fn stop_when_readable(&mut self, fd: OwnedFd, what: String) -> io::Result<()> {
        frontend::watch::stop_when_readable(&mut self.host(), fd, what)
    }

    /// passt's `--one-off`: the server stops once a stream guest (QEMU) has disconnected.
    pub fn stop_when_guest_leaves(&mut self) {
        self.switch.stop_when_guest_leaves();
    }

    /// The guest of forwards that name none (the API's `add_hostfwd` without `guest_addr`).
    pub fn set_default_guest(&mut self, ip: std::net::Ipv4Addr) {
        self.forwards.set_default_guest(ip);
    }

    /// Adds a forward (command line or API): checked against the table, bound, then recorded.
    /// `follow_family`: the rule named no guest (an IPv6 listener then leads to the default
    /// guest's IPv6 address when the gateway knows one).
    pub fn add_hostfwd(
        &mut self,
        driver: &mut Driver,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
        follow_family: bool,
    ) -> Result<u32, ForwardError> {
        self.forwards.add(driver, proto, host, guest, follow_family)
    }

    /// The switch's counters summed over every port that ever existed, and its table sizes.
    pub fn switch_stats(&self) -> Vec<(&'static str, u64)> {
        self.switch.stats()
    }

    /// Makes [`Server::serve`] return after the current batch, as SIGTERM does.
    pub fn request_stop(&self) {
        self.reactor.stopper().stop();
    }

    /// Runs until SIGINT or SIGTERM (or a front end asks to stop).
    pub async fn serve(mut self, mut driver: Driver) -> io::Result<()> {
        self.reactor.stop_on_signals()?;
        let stopper = self.reactor.stopper();
        let queue = self.reactor.queue().clone();
        let mut tokens = Vec::new();
        let mut waiter = Waiter::default();
        let mut last_expire = Instant::now();
        loop {
            let deadline = driver.poll_timeout();
            waiter.wait(&queue, deadline, &mut tokens).await;
            let now = Instant::now();
            for t in tokens.drain(..) {
                match classify(t) {
                    Ready::Signal => {}
                    Ready::Port(key) => self.switch.port_writable(PortId::from(key)),
                    Ready::FrontEnd(id) => self.run_front_end(now, id, &mut driver, false),
                    Ready::Gateway(t) => {
                        let sw = &mut self.switch;
                        driver.handle(now, t, &mut |f| sw.gateway_out(now, f))
                    }
                }
            }
            if stopper.stopping() {
                break;
            }
            let sw = &mut self.switch;
            if deadline.is_some_and(|d| d <= now) {
                driver.handle_timeout(now, &mut |f| sw.gateway_out(now, f));
            }
            driver.end_batch(now, &mut |f| sw.gateway_out(now, f));
            sw.flush_and_resume(now, &mut driver);
            sw.flush_pcap();
            if now.saturating_duration_since(last_expire) > Duration::from_secs(30) {
                last_expire = now;
                self.switch.expire(now);
                for id in self.reactor.ids() {
                    self.run_front_end(now, id, &mut driver, true);
                }
            }
        }
        self.switch.flush_pcap();
        // Closes every fd first; front ends remove their own socket files when dropped.
        self.reactor.clear();
        self.at_exit.remove_all();
        for line in self.switch.port_summaries() {
            log::info!("{line}");
        }
        let switch: Vec<String> = self
            .switch
            .stats()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        log::info!("switch: {}", switch.join(" "));
        let (t, u, i) = driver.gw.flow_counts();
        let counters: Vec<String> = driver
            .gw
            .stats()
            .pairs()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        log::info!(
            "stopped; flows tcp={t} udp={u} icmp={i}; {}",
            counters.join(" ")
        );
        Ok(())
    }

    /// Runs front end `id`'s handler (`tick`: its housekeeping instead).
    fn run_front_end(&mut self, now: Instant, id: FrontEndId, driver: &mut Driver, tick: bool) {
        // Taken out while its handler runs (the slot is not free, so nothing else lands in it).
        let Some(mut fe) = self.reactor.take(id) else {
            return;
        };
        let mut cx = Context {
            host: Host {
                reactor: &mut self.reactor,
                switch: &mut self.switch,
                at_exit: &mut self.at_exit,
            },
            driver,
            forwards: &mut self.forwards,
            id,
            now,
        };
        let keep = if tick {
            fe.tick(&mut cx)
        } else {
            fe.on_readable(&mut cx)
        };
        self.reactor.finish(id, fe, keep);
    }
}
