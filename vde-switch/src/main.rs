//! `warren`: a virtual switch with a built-in gateway for unprivileged QEMU guests.

use netstack::config::Config;
use netstack::gateway::Gateway;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use vde_switch::cli::{self, Invocation};
use vde_switch::frontend::vde::VdeOptions;
use vde_switch::reactor::{Driver, ReadyQueue};
use vde_switch::sandbox::Plan;
use vde_switch::server::{Listen, Server, ServerOptions};

fn default_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if Path::new(&d).is_dir() => Path::new(&d).join("warren.sock"),
        _ => PathBuf::from(format!(
            "/tmp/warren-{}.sock",
            rustix::process::getuid().as_raw()
        )),
    }
}

/// `warren ctl --api PATH COMMAND`: a client for the control socket.
fn ctl(args: Vec<String>) -> ExitCode {
    use slirp_compat::ctl::{parse_ctl_args, render_reply, Ctl};
    use std::io::{Read, Write};
    let cmd = match parse_ctl_args(args) {
        Ok(Ctl::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Ctl::Run(c)) => c,
        Err(e) => {
            eprintln!("warren ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for (req, bytes) in cmd.requests.iter().zip(cmd.request_bytes()) {
        let reply = std::os::unix::net::UnixStream::connect(&cmd.api).and_then(|mut s| {
            s.write_all(&bytes)?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut out = Vec::new();
            s.read_to_end(&mut out)?;
            Ok(out)
        });
        match reply
            .map_err(|e| format!("{}: {e}", cmd.api.display()))
            .and_then(|r| render_reply(req, &r).map_err(|e| e.to_string()))
        {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("warren ctl: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (capped at 2^20 when the hard limit is
/// unlimited) and returns the limit now in force; one log line says what happened.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    const CAP: u64 = 1 << 20;
    let old = getrlimit(Resource::Nofile);
    let soft = old.current.unwrap_or(CAP);
    let hard = old.maximum.unwrap_or(CAP).min(CAP);
    if hard <= soft {
        log::info!("file descriptors: limit {soft}");
        return soft;
    }
    let new = Rlimit {
        current: Some(hard),
        maximum: old.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => {
            log::info!("file descriptors: limit raised from {soft} to {hard} (the hard limit)");
            hard
        }
        Err(e) => {
            log::warn!("file descriptors: cannot raise the limit {soft} to {hard}: {e}");
            soft
        }
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ctl") => return ctl(args[1..].to_vec()),
        Some("__attach") => return vde_switch::netns::attach_main(&args[1..]),
        Some("__run-child") => return vde_switch::run::child_main(&args[1..]),
        Some("__exec-helper") => return vde_switch::sandbox::exec_helper_main(&args[1..]),
        Some(vde_switch::autofwd::HELPER) => return vde_switch::autofwd::helper_main(&args[1..]),
        _ => {}
    }
    // The slirp4netns drop-in: `slirp4netns …` (a link or copy named so) or `warren slirp4netns …`.
    let argv0 = std::env::args().next().unwrap_or_default();
    let as_s4n = vde_switch::slirp4netns::invoked_as_slirp4netns(&argv0);
    if as_s4n || args.first().map(String::as_str) == Some("slirp4netns") {
        if !as_s4n {
            args.remove(0);
        }
        match vde_switch::slirp4netns::translate("slirp4netns", args) {
            Ok(vde_switch::slirp4netns::DropIn::Print(text)) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Ok(vde_switch::slirp4netns::DropIn::Run(a)) => args = a,
            Err(e) => {
                eprintln!("slirp4netns: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // The passt and pasta drop-ins (`dropin.rs`): argv[0] `passt`/`pasta`, or `warren passt|pasta …`.
    let mut extras = None;
    let sub = vde_switch::dropin::subcommand(args.first().map(String::as_str));
    if let Some(kind) = vde_switch::dropin::invoked_as(&argv0).or(sub) {
        if sub.is_some() {
            args.remove(0);
        }
        match vde_switch::dropin::translate(kind, &args) {
            Ok(vde_switch::dropin::DropIn::Print(text)) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Ok(vde_switch::dropin::DropIn::Run(a, x)) if x.daemon => {
                // Errors in the options are the caller's to see, before detaching.
                if let Err(e) = cli::parse_command_line(a) {
                    eprintln!("{}: {e}", kind.name());
                    return ExitCode::FAILURE;
                }
                return vde_switch::dropin::daemonize(kind, &args);
            }
            Ok(vde_switch::dropin::DropIn::Run(a, x)) => {
                vde_switch::dropin::detach_if_daemon();
                args = a;
                extras = Some(x);
            }
            Err(e) => {
                eprintln!("{}: {e}", kind.name());
                return ExitCode::FAILURE;
            }
        }
    }
    // warren's own command line (clap): parse, then resolve, then serve.
    let mut opts = match cli::parse_command_line(args) {
        Ok(Invocation::Serve(o)) => *o,
        Ok(Invocation::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(x) = &extras {
        x.apply(&mut opts);
    }
    vde_switch::logger::init(opts.verbosity);
    vde_switch::activation::init(); // systemd's LISTEN_FDS, before any thread or child starts
    if let Err(e) = opts.resolve(Path::new("/etc/resolv.conf")) {
        eprintln!("warren: {e}");
        return ExitCode::from(2);
    }
    if opts.listen.is_empty()
        && opts.dgram.is_empty()
        && opts.vhost_user.is_empty()
        && opts.vde.is_empty()
        && !opts.netns.active()
        && extras.as_ref().is_none_or(|x| x.stream_fd.is_none())
    {
        opts.listen.push(Listen::Unix(default_socket()));
    }
    if !opts.vde.is_empty() && opts.config.mtu > 1500 {
        log::warn!(
            "--mtu {} with --vde: VDE2 peers carry frames of at most 1518 bytes; larger frames to them are dropped",
            opts.config.mtu
        );
    }
    let vde: Vec<VdeOptions> = opts
        .vde
        .iter()
        .map(|dir| VdeOptions {
            dir: dir.clone(),
            mode: opts.vde_mode,
            group: opts.vde_group,
        })
        .collect();
    let (dgram, isolate) = (opts.dgram.clone(), opts.isolate);
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
    let vxlan_mtu = vde_switch::vxlan::plan_mtu(&mut opts.config, &mut opts.vxlan);
    if opts.config.mtu < netstack::addr6::MIN_MTU && opts.config.v6.is_some() {
        // Guests ignore a router advertisement's MTU below IPv6's minimum: IPv4 only then.
        log::warn!(
            "MTU {} is below IPv6's minimum of {}: serving IPv4 only (--no-ipv6 says so quietly)",
            opts.config.mtu,
            netstack::addr6::MIN_MTU
        );
        opts.config.v6 = None;
    }
    let cfg = opts.config.clone();
    // --netns / warren run: the namespace is attached (and warren run's command started) before serving.
    let (mut attachment, running) =
        match vde_switch::netns::prepare(&opts.netns, &cfg, &opts.config.dns_search) {
            Ok(Some((a, r))) => (Some(a), r),
            Ok(None) => (None, None),
            Err(e) => {
                eprintln!("warren: {e}");
                return ExitCode::FAILURE;
            }
        };
    // After the namespace helpers and warren run's command started (they keep the usual limit).
    let fd_limit = raise_fd_limit();
    let (flows_total, flows_per_guest) =
        netstack::flow::flow_limits(fd_limit, opts.config.max_flows_per_guest);
    log::info!(
        "NAT flows: at most {flows_total} in all, {flows_per_guest} per guest (from the fd limit {fd_limit})"
    );
    opts.config.max_flows_total = flows_total;
    opts.config.max_flows_per_guest = flows_per_guest;
    let cfg = Config {
        max_flows_total: flows_total,
        max_flows_per_guest: flows_per_guest,
        ..cfg
    };
    let mut sandbox = Plan::new(&opts, running.as_ref().map(|r| r.pid() as u32));
    if let Some(pid_file) = extras.as_ref().and_then(|x| x.pid_file.as_deref()) {
        // passt's and pasta's --pid: removed at exit.
        sandbox.remove_at_exit(pid_file);
    }
    let listen = opts.listen.clone();
    let (hostfwd, api) = (opts.hostfwd.clone(), opts.api.clone());
    // Where forwards go when they name no guest: the first lease, or (as slirp4netns does) the address
    // --configure gives a namespace.
    let default_guest = if let (true, Some(a)) = (opts.netns.configure, opts.netns.address) {
        a
    } else if opts.netns.active() && opts.netns.configure {
        std::net::Ipv4Addr::from(
            u32::from(opts.config.net.network()) | vde_switch::netns::CONFIGURED_HOST,
        )
    } else {
        opts.config.dhcp_start
    };
    let result = rt.block_on(async move {
        let queue = Arc::new(ReadyQueue::default());
        let mut driver = Driver::new(
            Gateway::new(cfg.clone(), netstack_driver::random_seed()),
            queue.clone(),
        );
        let mut server = Server::bind(queue, &driver, &ServerOptions {
                listen: listen.clone(),
                pcap: opts.pcap.clone(),
                dgram: dgram.clone(),
                dgram_idle: opts.dgram_idle,
                vhost_user: opts.vhost_user.clone(),
                vde: vde.clone(),
                isolate,
                lan: opts.lan.clone(),
            })?;
        vde_switch::frontend::vxlan::bind(&mut server.host(), &opts.vxlan)?;
        if let Some(line) = &vxlan_mtu {
            println!("warren: {line}");
        }
        if opts.vxlan.no_gateway {
            println!("warren: --no-gateway: a pure switch (no DHCP, DNS, NAT); the gateway is elsewhere on the overlay");
        }
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
        for p in &dgram {
            println!(
                "warren: QEMU: -netdev dgram,id=net0,local.type=unix,local.path=GUEST.sock,remote.type=unix,remote.path={} -device virtio-net-pci,netdev=net0   (GUEST.sock: a path of the guest's own, writable by this user)",
                p.display()
            );
        }
        for p in &opts.vhost_user {
            println!(
                "warren: QEMU: {}   (SIZE: the guest's RAM, as -m; under TCG keep vectors=0)",
                vde_switch::frontend::vhost_user::qemu_args(p)
            );
        }
        for v in &vde {
            println!(
                "warren: QEMU: -netdev vde,id=net0,sock={} -device virtio-net-pci,netdev=net0   (or: vde_plug {})",
                v.dir.display(),
                v.dir.display()
            );
        }
        if isolate {
            println!("warren: --isolate: guests reach the gateway only, not each other");
        }
        if cfg.restrict {
            println!("warren: --restrict: guests may not open outbound connections");
        }
        server.set_default_guest(default_guest);
        let mut fwd_cfg = cfg.clone();
        fwd_cfg.dhcp_start = default_guest;
        for spec in &hostfwd {
            let rules = spec.resolve(&fwd_cfg).map_err(std::io::Error::other)?;
            for r in rules {
                server
                    .add_hostfwd(&mut driver, r.proto, r.host, r.guest, r.follow_family)
                    .map_err(|e| std::io::Error::other(format!("--hostfwd {spec}: {e}")))?;
                if r.follow_family && !fwd_cfg.ipv4 {
                    println!(
                        "warren: forwarding {} {} -> the guest's IPv6 address, port {}",
                        r.proto,
                        r.host,
                        r.guest.port()
                    );
                } else {
                    println!("warren: forwarding {} {} -> {}", r.proto, r.host, r.guest);
                }
            }
        }
        for g in &cfg.guestfwds {
            println!("warren: guestfwd {}:{} -> {:?}", g.addr, g.port, g.target);
        }
        if let Some(api) = &api {
            server.listen_api(api)?;
            println!("warren: control socket {} (warren ctl --api {} list)", api.display(), api.display());
        }
        vde_switch::activation::close_unused();
        if let Some(a) = attachment.as_mut() {
            a.install(&mut server.host())?;
        }
        if let Some(x) = &extras {
            x.ready(&mut server)?;
        }
        // The pid file is written: confine the process before serving a single frame.
        vde_switch::sandbox::enter(&sandbox, &mut driver)?;
        server.serve(driver).await
    });
    if let Some(r) = running {
        if let Err(e) = result {
            eprintln!("warren: {e}");
        }
        return r.finish();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren: {e}");
            ExitCode::FAILURE
        }
    }
}
