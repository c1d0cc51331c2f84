//! Logging: `env_logger` behind the `log` facade, one line per record on stderr,
//! `warren: LEVEL: message` (tests and users grep these lines).
//!
//! `-q` warnings only, default info, `-v` debug, `-vv` trace; `RUST_LOG` adds per-module
//! directives on top (`RUST_LOG=netstack::tcp=debug`, or a bare level for everything).
//!
//! The daemon runs under seccomp after startup (`sandbox.rs`): this logger must not make new
//! syscalls at run time. It is built without colour detection and timestamps (env_logger's
//! default features are off), formats into a buffer and writes it to stderr with `write`.

use log::{Level, LevelFilter};
use std::io::Write;

/// The level for warren's verbosity: -1 warnings only, 0 info, 1 debug, 2+ trace.
pub fn level(verbosity: i8) -> LevelFilter {
    match verbosity {
        i8::MIN..=-1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// warren's word for a level.
pub fn level_word(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// A logger for `verbosity` with `rust_log`'s directives (the value of `RUST_LOG`) on top.
pub fn builder(verbosity: i8, rust_log: Option<&str>) -> env_logger::Builder {
    let mut b = env_logger::Builder::new();
    b.filter_level(level(verbosity))
        .write_style(env_logger::WriteStyle::Never)
        .target(env_logger::Target::Stderr)
        .format(|buf, r| writeln!(buf, "warren: {}: {}", level_word(r.level()), r.args()));
    if let Some(directives) = rust_log.filter(|s| !s.trim().is_empty()) {
        b.parse_filters(directives);
    }
    b
}

/// Installs the logger (once; later calls do nothing).
pub fn init(verbosity: i8) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let _ = builder(verbosity, rust_log.as_deref()).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log;

    fn enabled(l: &env_logger::Logger, target: &str, level: Level) -> bool {
        l.enabled(&log::Metadata::builder().target(target).level(level).build())
    }

    #[test]
    fn verbosity_and_rust_log() {
        let quiet = builder(-1, None).build();
        assert!(enabled(&quiet, "netstack::tcp", Level::Warn));
        assert!(!enabled(&quiet, "netstack::tcp", Level::Info));
        let normal = builder(0, None).build();
        assert!(enabled(&normal, "vde_switch::server", Level::Info));
        assert!(!enabled(&normal, "vde_switch::server", Level::Debug));
        assert!(enabled(&builder(1, None).build(), "x", Level::Debug));
        assert!(enabled(&builder(2, None).build(), "x", Level::Trace));
        // Per-module: only netstack::tcp gets debug.
        let tcp = builder(0, Some("netstack::tcp=debug")).build();
        assert!(enabled(&tcp, "netstack::tcp", Level::Debug));
        assert!(!enabled(&tcp, "netstack::udp", Level::Debug));
        assert!(enabled(&tcp, "netstack::udp", Level::Info));
        // A bare level in RUST_LOG replaces the -v/-q default.
        let all = builder(-1, Some("trace")).build();
        assert!(enabled(&all, "anything", Level::Trace));
        assert!(!enabled(&builder(0, Some("  ")).build(), "x", Level::Debug));
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn format_is_warren_level_message() {
        let out = Shared::default();
        let l = builder(0, None)
            .target(env_logger::Target::Pipe(Box::new(out.clone())))
            .build();
        for (level, msg) in [
            (Level::Warn, "careful"),
            (Level::Info, "sandbox: on"),
            (Level::Debug, "hidden"),
        ] {
            l.log(
                &log::Record::builder()
                    .target("vde_switch::sandbox")
                    .level(level)
                    .args(format_args!("{msg}"))
                    .build(),
            );
        }
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(
            text,
            "warren: warning: careful\nwarren: info: sandbox: on\n"
        );
    }
}
