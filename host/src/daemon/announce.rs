//! The lines scripts read on stdout: `listening on ADDR (tcp)` (or `(udp)`)
//! once a socket is up, and `stopped: <counters>` at the end.
//!
//! Best effort: a thread of their own writes them, so a stdout nobody reads
//! (a full pipe) never blocks serving, and a gone one (a closed pipe: the
//! write fails with `EPIPE`, since Rust programs ignore SIGPIPE) never
//! panics: the line is lost, and serving goes on. At exit, [`finish`] gives
//! the last lines a bounded time to go out.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use super::stats::Totals;

/// How long the process waits at exit for its last lines to be written.
const FINISH: Duration = Duration::from_secs(1);

/// The writing thread's ends.
struct Writer {
    lines: mpsc::Sender<String>,
    /// One message per line written (or lost to an error).
    written: Mutex<mpsc::Receiver<()>>,
    /// Lines handed to the thread.
    sent: AtomicUsize,
}

static WRITER: OnceLock<Option<Writer>> = OnceLock::new();

/// Announces `listening on ADDR (PROTO)` for each address and protocol
/// (`tcp`, `udp`), in order.
pub fn listening(addrs: impl IntoIterator<Item = (SocketAddr, &'static str)>) {
    for (addr, proto) in addrs {
        line(format!("listening on {addr} ({proto})\n"));
    }
}

/// Announces `stopped: <counters>`.
pub fn stopped(totals: &Totals) {
    line(format!("stopped: {totals}\n"));
}

/// Waits up to [`FINISH`] for every line announced so far to be written.
pub fn finish() {
    let Some(writer) = WRITER.get().and_then(Option::as_ref) else {
        return;
    };
    // Only this function takes acknowledgements, once, at exit.
    let Ok(written) = writer.written.lock() else {
        return;
    };
    let sent = writer.sent.load(Ordering::Acquire);
    if super::receive_within(&written, sent, FINISH).count() < sent {
        log::warn!("stdout is not being read: the last lines may be lost");
    }
}

/// Hands `text` to the writing thread (started on first use).
fn line(text: String) {
    let Some(writer) = WRITER.get_or_init(start).as_ref() else {
        return;
    };
    if writer.lines.send(text).is_ok() {
        writer.sent.fetch_add(1, Ordering::Release);
    }
}

/// Starts the writing thread; `None` (lines are dropped) if it cannot start.
fn start() -> Option<Writer> {
    let (lines, to_write) = mpsc::channel::<String>();
    let (ack, written) = mpsc::channel();
    let spawned = thread::Builder::new().name("stdout".into()).spawn(move || {
        let mut out = io::stdout().lock();
        for text in to_write {
            // An error (EPIPE, or anything else) loses this line only.
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            let _ = ack.send(());
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot start the stdout writer ({e}): announcements are dropped");
        return None;
    }
    Some(Writer {
        lines,
        written: Mutex::new(written),
        sent: AtomicUsize::new(0),
    })
}
