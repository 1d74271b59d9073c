//! A minimal `weft switch` without the rest of weft: runs the daemon from a
//! config file until SIGINT/SIGTERM, reloading on SIGHUP. Handy for quick
//! release-mode measurements (`cargo build --release -p weft-datapath
//! --example switchd` builds only this crate).

use std::sync::Arc;
use weft_datapath::daemon::{Switch, SwitchOptions};
use weft_datapath::io::sys;
use weft_datapath::SwitchConfig;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: switchd CONFIG.toml");
        std::process::exit(2);
    };
    let cfg = match SwitchConfig::load(path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchd: {e}");
            std::process::exit(1);
        }
    };
    let sock = cfg.switch.control_socket.clone();
    if let Err(e) = sys::block_control_signals() {
        eprintln!("switchd: {e}");
        std::process::exit(1);
    }
    // SWITCHD_VNET_HDR=0: AF_PACKET ports without PACKET_VNET_HDR (the switch
    // then segments / completes checksums itself), to compare the two.
    let mut opts = SwitchOptions::default();
    if std::env::var("SWITCHD_VNET_HDR").as_deref() == Ok("0") {
        opts.packet.vnet_hdr = false;
    }
    let handle = match Switch::start_with(cfg, opts) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            eprintln!("switchd: {e}");
            std::process::exit(1);
        }
    };
    let _server = handle.serve_control(&sock, None);
    loop {
        match sys::wait_signal(1000) {
            Some(sys::SIGHUP) => match SwitchConfig::load(path.as_ref()) {
                Ok(c) => {
                    if let Err(e) = handle.apply(c) {
                        eprintln!("switchd: reload failed: {e}");
                    }
                }
                Err(e) => eprintln!("switchd: reload failed: {e}"),
            },
            Some(_) => break,
            None => {}
        }
    }
    handle.shutdown();
}
