//! `warren-bridge-helper`: see `tap_helper::helper` and README.md.

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(tap_helper::helper::run(argv));
}
