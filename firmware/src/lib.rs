//! selecho on a microcontroller: the echo machines (`selecho-core`, TCP and
//! UDP) served through their smoltcp adapters over a LAN9118, on QEMU's
//! `mps2-an385`.
//!
//! - [`server`]: the serving loop on any board that provides a smoltcp
//!   device, a clock and a sleep ([`server::Board`]), TCP and UDP echo on
//!   each port; the memory it uses ([`server::Statics`]) is the binary's
//!   to place.
//! - [`fragments`]: IPv4 fragments dropped before smoltcp, and counted.
//! - [`board`]: the mps2-an385 (LAN9118, SysTick, `wfi`).
//! - [`args`]: the command line `firmware/run` passes through semihosting.
//! - [`clock`]: microseconds from a wrapping hardware counter.
//! - [`config`]: the capacities this build's statics are sized by.
//!
//! Logs go out as defmt frames over semihosting (decode them with
//! `defmt-print`); the exit status (semihosting) ends QEMU with it.

#![no_std]

pub mod args;
pub mod board;
pub mod clock;
pub mod config;
pub mod fragments;
pub mod server;

use defmt_semihosting as _;

/// Exit statuses, as QEMU (and `firmware/run`) pass them on.
pub mod exit {
    /// A test failed, or the firmware stopped on an error.
    pub const FAILURE: i32 = 1;
    /// The command line was refused.
    pub const USAGE: i32 = 2;
    /// A panic.
    pub const PANIC: i32 = 101;
}

/// The command line, without the program's name, into `args` (at most
/// `args.capacity()` words of a command line of at most `BUF` bytes);
/// `None` if semihosting gives none or it does not fit.
pub fn command_line<'a, const BUF: usize, const MAX: usize>(
    storage: &'a semihosting::experimental::env::Args<BUF>,
    args: &mut heapless::Vec<&'a str, MAX>,
) -> Option<()> {
    for arg in storage.into_iter().skip(1) {
        let arg = arg.ok()?;
        if !arg.is_empty() {
            args.push(arg).ok()?;
        }
    }
    Some(())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => defmt::error!("panic at {=str}:{=u32}", at.file(), at.line()),
        None => defmt::error!("panic"),
    }
    semihosting::process::exit(exit::PANIC)
}
