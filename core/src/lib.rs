//! The echo machines behind selecho: `no_std`, no allocation, no I/O.
//!
//! [`Echo`] (TCP) keeps a fixed table of `N` connections, each with a
//! `Q`-byte [`ByteQueue`] of bytes received and not yet echoed.
//! [`DatagramEcho`] (UDP) keeps a bounded queue of datagrams to echo, with
//! loop protection and a per-source rate limit; its docs give its contract
//! and run loop. Neither touches a socket, a clock or a thread: the shell (a
//! `select` loop, a smoltcp interface, a test) tells it what happened
//! through `handle_*` calls and asks what to do through `poll_*` calls and
//! [`Echo::connections`].
//!
//! What follows is the TCP machine's contract.
//!
//! # The contract
//!
//! - **Time** is the core's own [`Instant`], passed in as `now`. It must be
//!   monotonic (never a wall clock) and never go backwards between calls.
//! - **Handles** are the shell's (`H: Copy`): a file descriptor, a smoltcp
//!   `SocketHandle`. The machine stores one per connection and gives it back
//!   in [`Close`]; the shell releases it only then.
//! - **Ids** ([`ConnId`]) go stale the moment the machine decides to close
//!   the connection (reset, timeout, drained, [`Echo::close`]): from then on
//!   every call with them returns [`StaleId`] (or the `Stale` variant of the
//!   call's error), and stays so after [`Echo::poll_close`] frees the slot
//!   for another connection.
//! - **Drain order**, each turn of the shell's loop:
//!   1. feed the events: [`handle_accept`](Echo::handle_accept) while
//!      [`accepting`](Echo::accepting); for each ready connection read into
//!      [`recv_buf`](Echo::recv_buf) and report
//!      [`handle_received`](Echo::handle_received) (or
//!      [`handle_end_of_stream`](Echo::handle_end_of_stream) on end of stream,
//!      [`handle_reset`](Echo::handle_reset) on error,
//!      [`handle_would_block`](Echo::handle_would_block) when nothing was
//!      waiting), send from
//!      [`send_buf`](Echo::send_buf) and report
//!      [`handle_sent`](Echo::handle_sent); and
//!      [`handle_timeout`](Echo::handle_timeout) once `now` reaches the deadline;
//!   2. drain [`poll_close`](Echo::poll_close) until `None`, closing each
//!      handle as told ([`CloseHow`]);
//!   3. rebuild what to watch from [`connections`](Echo::connections) and
//!      sleep until I/O or [`poll_timeout`](Echo::poll_timeout). Nothing
//!      else makes work, so a shell that does this never spins.
//!
//! # Guarantees
//!
//! - **Bounded memory**: everything is inside `Echo`, sized by `N` and `Q`.
//! - **Backpressure**: read interest is on only while the queue has room and
//!   the peer may still send; write interest only while bytes are queued.
//! - **No lost byte on a healthy connection**: after the peer half-closes,
//!   every queued byte is offered for sending before the graceful close.
//! - **A graceful close tells the truth**: the machine orders one only when
//!   every byte the peer sent has been offered back (its end of stream came,
//!   or, while shutting down, a read found nothing more waiting and the
//!   connection stayed quiet for [`Config::quiet_period`]); a
//!   connection cut short (reset, idle with bytes queued, the end of a
//!   shutdown's grace) is closed with [`CloseHow::Abort`].
//! - **Fairness**: one `recv_buf` lends at most `Q` bytes and one
//!   `send_buf` offers at most what is queued (at most `Q`); a connection
//!   cannot read again until its queue has room. So the work one connection
//!   can claim per read/send pair is bounded by `Q`, however busy its peer,
//!   and a shell that serves every ready connection a bounded number of
//!   pairs per turn serves all of them. The select shell does one read per
//!   ready connection per turn; the smoltcp adapter at most four.
//! - **No panic** on any sequence of calls: misuse (stale ids, counts larger
//!   than offered) returns an error and changes nothing.
//!
//! # A run loop
//!
//! ```no_run
//! use selecho_core::{CloseHow, Config, Duration, Echo, Instant};
//!
//! # fn clock() -> Instant { Instant::ZERO }
//! # fn ready_to_accept() -> Option<i32> { None }
//! # fn readable() -> Vec<selecho_core::ConnId> { Vec::new() }
//! # fn read(fd: i32, buf: &mut [u8]) -> std::io::Result<usize> { Ok(0) }
//! # fn write(fd: i32, buf: &[u8]) -> std::io::Result<usize> { Ok(0) }
//! # fn close(fd: i32, how: CloseHow) {}
//! # fn wait(fds: &[(i32, selecho_core::Interest)], until: Option<Instant>) {}
//! let config = Config::new().with_idle_timeout(Some(Duration::from_secs(30)));
//! let mut echo: Echo<i32, 8, 1024> = Echo::new(config);
//! loop {
//!     let now = clock();
//!     while echo.accepting() {
//!         let Some(fd) = ready_to_accept() else { break };
//!         if echo.handle_accept(fd, now).is_err() {
//!             close(fd, CloseHow::Abort);
//!         }
//!     }
//!     for id in readable() {
//!         let fd = echo.handle(id).unwrap();
//!         let buf = echo.recv_buf(id).unwrap();
//!         match read(fd, buf) {
//!             Ok(0) => echo.handle_end_of_stream(id, now).unwrap(),
//!             Ok(n) => echo.handle_received(id, n, now).unwrap(),
//!             Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
//!                 echo.handle_would_block(id, now).unwrap()
//!             }
//!             Err(_) => echo.handle_reset(id).unwrap(),
//!         }
//!         // Send at once rather than waiting a turn for writability.
//!         if let Ok(bytes) = echo.send_buf(id) {
//!             match write(fd, bytes) {
//!                 Ok(n) => echo.handle_sent(id, n, now).unwrap(),
//!                 Err(_) => echo.handle_reset(id).unwrap(),
//!             }
//!         }
//!     }
//!     echo.handle_timeout(now);
//!     while let Some(c) = echo.poll_close() {
//!         close(c.handle, c.how);
//!     }
//!     let watch: Vec<_> = echo.connections().map(|(_, fd, interest)| (fd, interest)).collect();
//!     wait(&watch, echo.poll_timeout());
//! }
//! ```
//!
//! # Features
//!
//! - `log` / `defmt`: where log lines go (at most one); `defmt` also derives
//!   `defmt::Format` on every public type.
//! - `smoltcp`: the `smoltcp` module drives the machines from a smoltcp
//!   `SocketSet`: [`Echo`] from TCP sockets, [`DatagramEcho`] from a UDP
//!   socket.
//! - `sim`: the `sim` module, an in-memory network of fake clients and a
//!   fake clock for tests.
//!
//! `N` must be at least 1 (a compile error otherwise). With `Q = 0` a
//! connection can never read, so only the idle timeout ends it.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
mod macros;

mod conn;
mod datagram;
mod echo;
pub mod queue;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "smoltcp")]
pub mod smoltcp;
mod time;

pub use conn::{Close, CloseHow, CloseReason, ConnId, Counters, Interest};
pub use datagram::{
    DatagramConfig, DatagramCounters, DatagramEcho, Dropped, LOOP_PORTS, Peer, QueueEmpty,
    RateLimit, ReceiveError, Transmit, is_loop_port,
};
pub use echo::{AcceptError, Config, Echo, ReportError, StaleId};
pub use queue::ByteQueue;
pub use time::{Duration, Instant};
