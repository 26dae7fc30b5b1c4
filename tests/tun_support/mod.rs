//! What the TUN shell's test files share: how to start the server, and a
//! raw link and a hand-written TCP peer for the tests that send packets no
//! kernel would.

#![allow(dead_code)]

pub mod link;
#[path = "../../core/tests/net/mod.rs"]
pub mod net;
pub mod peer;

use std::process::Command;

use selecho_testkit::process::ServerProcess;
use selecho_testkit::selecho;

/// smoltcp's address on the device.
pub const ADDRESS: &str = "10.77.0.2/24";
/// The kernel's address on the device.
pub const HOST_ADDRESS: &str = "10.77.0.1/24";
/// The same over IPv6.
pub const ADDRESS6: &str = "fd00:77::2/64";
pub const HOST_ADDRESS6: &str = "fd00:77::1/64";

/// `selecho tun -q --ifname tun0 --address .. --host-address .. ARGS`
/// (IPv4 addresses unless ARGS gives `--address`).
pub fn tun_cmd(args: &[&str]) -> Command {
    let mut cmd = selecho!();
    cmd.args(["tun", "-q"]);
    if !args.contains(&"--address") {
        cmd.args(["--address", ADDRESS, "--host-address", HOST_ADDRESS]);
    }
    if !args.contains(&"--ifname") {
        cmd.args(["--ifname", "tun0"]);
    }
    cmd.args(args);
    cmd
}

/// A server of the address family (IPv4 on `tun4` or IPv6 on `tun6`,
/// unless `extra` names the device) with `extra` arguments, once it has
/// announced `listeners` sockets.
pub fn start_family(v6: bool, extra: &[&str], listeners: usize) -> ServerProcess {
    let mut args = if v6 {
        vec!["--address", ADDRESS6, "--host-address", HOST_ADDRESS6]
    } else {
        vec![]
    };
    if !extra.contains(&"--ifname") {
        args.extend(["--ifname", if v6 { "tun6" } else { "tun4" }]);
    }
    args.extend(extra);
    ServerProcess::start(tun_cmd(&args), listeners)
}

/// The MAC address of the kernel's side of `ifname` (from `ip`: this
/// thread's namespace, which `/sys` may not show).
pub fn mac_of(ifname: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "dev", ifname])
        .output()
        .expect("run ip");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .skip_while(|word| *word != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC address for {ifname} in {text:?}"));
    let mut mac = [0; 6];
    for (byte, hex) in mac.iter_mut().zip(hex.split(':')) {
        *byte = u8::from_str_radix(hex, 16).expect("a MAC address");
    }
    mac
}
