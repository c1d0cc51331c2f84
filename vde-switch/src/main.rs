//! `warren`: a virtual switch with a built-in gateway for unprivileged QEMU guests.

use netstack::driver::{Driver, ReadyQueue};
use netstack::gateway::Gateway;
use netstack::resolv;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use vde_switch::cli::{self, USAGE};
use vde_switch::server::{Listen, Server, ServerOptions};

fn default_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if Path::new(&d).is_dir() => Path::new(&d).join("warren.sock"),
        // SAFETY: getuid has no preconditions and cannot fail.
        _ => PathBuf::from(format!("/tmp/warren-{}.sock", unsafe { libc::getuid() })),
    }
}

fn main() -> ExitCode {
    let mut opts = match cli::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if opts.version {
        println!("warren {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    vde_switch::logger::init(opts.verbosity);
    if opts.listen.is_empty() {
        opts.listen.push(Listen::Unix(default_socket()));
    }
    let rc = resolv::read(Path::new("/etc/resolv.conf")).unwrap_or_default();
    if opts.config.dns_upstreams.is_empty() {
        opts.config.dns_upstreams = rc.nameservers.clone();
        if opts.config.dns_upstreams.is_empty() {
            log::warn!("no DNS upstream: /etc/resolv.conf names no nameserver and no --dns-upstream was given");
        }
    }
    if !opts.dns_search_given {
        opts.config.dns_search = rc.search.clone();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start the event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = opts.config.clone();
    let listen = opts.listen.clone();
    let result = rt.block_on(async move {
        let queue = Arc::new(ReadyQueue::default());
        let driver = Driver::new(Gateway::new(cfg.clone()), queue.clone());
        let server = Server::bind(queue, &driver, &ServerOptions { listen: listen.clone(), pcap: opts.pcap.clone() })?;
        println!(
            "warren: serving {}/{}: gateway {} (host loopback: {}), DNS {}, first lease {}, MTU {}",
            cfg.net.network(),
            cfg.net.prefix,
            cfg.gateway,
            if cfg.host_loopback { "yes" } else { "no" },
            cfg.dns,
            cfg.dhcp_start,
            cfg.mtu
        );
        for l in &listen {
            let netdev = match l {
                Listen::Unix(p) => format!("-netdev stream,id=net0,server=off,reconnect=1,addr.type=unix,addr.path={}", p.display()),
                Listen::Tcp(a) => format!(
                    "-netdev stream,id=net0,server=off,reconnect=1,addr.type=inet,addr.host={},addr.port={}   (or: -netdev socket,id=net0,connect={a})",
                    a.ip(),
                    a.port()
                ),
            };
            println!("warren: QEMU: {netdev} -device virtio-net-pci,netdev=net0");
        }
        server.serve(driver).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren: {e}");
            ExitCode::FAILURE
        }
    }
}
