//! What selecho's tests and benchmark share, in one place:
//!
//! - [`scenarios`]: the behaviour scenarios every driver runs (the core's
//!   simulator, the select shell, the TUN shell, the firmware), and
//!   [`tcp`] and [`udp`], the client side of them over real sockets;
//! - [`pattern`]: the position-addressed byte stream every echo is checked
//!   against;
//! - [`process`]: a server binary as a child process (`listening on`
//!   lines, signals, exit, CPU time from [`procstat`]);
//! - [`netns`]: a network namespace of a test's own, or a skip said out
//!   loud.

pub mod netns;
pub mod pattern;
pub mod process;
pub mod procstat;
pub mod scenarios;
pub mod tcp;
pub mod udp;

/// `Command` for the `selecho` binary of the crate the calling test
/// belongs to (`CARGO_BIN_EXE_selecho`, expanded in that crate).
#[macro_export]
macro_rules! selecho {
    () => {
        ::std::process::Command::new(env!("CARGO_BIN_EXE_selecho"))
    };
}
