//! The main thread of the select shell: it starts one worker per thread,
//! then waits for signals, the stats interval and workers ending, and
//! tells the workers what to do through their control pipes (stop; report
//! your totals). It adds up their totals for the stats lines and the final
//! `stopped:` line. It touches no connection.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, mpsc};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Duration;

use anyhow::Context;
use log::warn;

use super::Machine;
use super::accept::Admission;
use super::plan::Plan;
use super::setup::Sockets;
use super::worker::{Start, Worker, order};
use crate::daemon::clock::Clock;
use crate::daemon::signals::Signals;
use crate::daemon::stats::{Stats, Totals};
use crate::daemon::thread;
use crate::daemon::{self, announce};
use crate::sys::poll;

/// How long the main thread waits for the workers' reports.
const REPORT_WAIT: Duration = Duration::from_secs(1);

/// How long a worker may take to build its machine.
const START_WAIT: Duration = Duration::from_secs(60);

/// A running worker, as the main thread sees it.
struct Handle<'scope> {
    control: UnixStream,
    thread: ScopedJoinHandle<'scope, anyhow::Result<Totals>>,
    /// Its exit notice came: it has ended, or is about to.
    ended: bool,
}

/// Starts the workers and serves until they have all stopped; returns
/// their totals, added up.
pub fn run(plan: &Plan, sockets: Sockets, signals: &Signals) -> anyhow::Result<Totals> {
    let (exited, exit_notice) = UnixStream::pair().context("creating the wake pipe")?;
    exited.set_nonblocking(true)?;
    let (replies, reports) = mpsc::channel();
    let (started, starts) = mpsc::channel();
    let admission = Arc::new(Admission::new(plan.max_conns, plan.threads));
    let listeners: Arc<[TcpListener]> = sockets.tcp.into();
    // Each UDP socket to one worker, round-robin.
    let mut udp: Vec<Vec<UdpSocket>> = (0..plan.threads).map(|_| Vec::new()).collect();
    for (i, socket) in sockets.udp.into_iter().enumerate() {
        udp[i % plan.threads].push(socket);
    }
    std::thread::scope(|scope| {
        let mut workers = Vec::with_capacity(plan.threads);
        for (index, udp) in udp.into_iter().enumerate() {
            let (control, worker_end) = UnixStream::pair().context("creating a control pipe")?;
            worker_end.set_nonblocking(true)?;
            let start = Start {
                index,
                listeners: Arc::clone(&listeners),
                udp,
                datagram: plan.datagram,
                admission: Arc::clone(&admission),
                control: worker_end,
                replies: replies.clone(),
                fd_capacity: sockets.fd_capacity,
            };
            let notice = exit_notice.try_clone()?;
            let thread = spawn(scope, plan, start, started.clone(), notice)?;
            workers.push(Handle {
                control,
                thread,
                ended: false,
            });
        }
        // The workers hold the listeners now: the last to stop closes them.
        drop(listeners);
        drop(started);
        let mut main = Main {
            workers,
            reports: &reports,
            signals,
            exited,
            clock: Clock::new(),
            stopping: false,
        };
        if main.all_started(&starts) {
            announce::listening(sockets.addrs);
        } else {
            main.stop_all();
        }
        main.run(plan)
    })
}

/// Starts one worker: it builds its machine on its own thread, says
/// whether that worked on `started`, serves, and says it has ended (also on
/// a panic) by writing its index to `notice`.
fn spawn<'scope>(
    scope: &'scope Scope<'scope, '_>,
    plan: &'scope Plan,
    start: Start,
    started: mpsc::Sender<bool>,
    notice: UnixStream,
) -> anyhow::Result<ScopedJoinHandle<'scope, anyhow::Result<Totals>>> {
    let name = format!("select-{}", start.index);
    // At most 64 threads (the CLI's bound): an index fits a byte.
    let index = start.index as u8;
    thread::spawn_with_stack_for::<Machine, _>(scope, &name, move || {
        let _notice = ExitNotice(notice, index);
        let worker = Worker::new(start, plan);
        // The main thread waits for it; should it be gone, so is the process.
        let _ = started.send(worker.is_ok());
        worker?.serve()
    })
    .with_context(|| format!("starting thread {name}"))
}

/// Writes the worker's index to the main thread's wake pipe when dropped.
struct ExitNotice(UnixStream, u8);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        // One byte into an empty socket buffer: it does not fail.
        let _ = (&self.0).write(&[self.1]);
    }
}

/// The main thread's state.
struct Main<'scope, 'a> {
    workers: Vec<Handle<'scope>>,
    reports: &'a mpsc::Receiver<(usize, Totals)>,
    signals: &'a Signals,
    exited: UnixStream,
    clock: Clock,
    stopping: bool,
}

impl Main<'_, '_> {
    /// Waits for every worker to say it built its machine; false if one
    /// could not (its error comes back when it is joined) or took too long.
    fn all_started(&self, starts: &mpsc::Receiver<bool>) -> bool {
        let n = self.workers.len();
        daemon::receive_within(starts, n, START_WAIT)
            .take_while(|&started| started)
            .count()
            == n
    }

    /// Until every worker has ended: signals, stats, workers ending.
    fn run(&mut self, plan: &Plan) -> anyhow::Result<Totals> {
        let mut stats = Stats::new(plan.stats_every, self.clock.now());
        while !self.workers.iter().all(|w| w.ended) {
            let timeout = stats.deadline().map(|d| self.clock.until(d));
            let fds = [self.signals.fd(), self.exited.as_raw_fd()];
            let [signalled, woken] = poll::wait_readable(fds, timeout).context("waiting")?;
            if signalled && self.signals.take().handle(|| self.gather()) {
                self.stop_all();
            }
            if woken {
                self.note_exits();
                // A worker that ended before a stop failed: stop the others
                // (its error is returned once they are done).
                if !self.stopping {
                    warn!("a worker ended unexpectedly: stopping the others");
                    self.stop_all();
                }
            }
            stats.tick(self.clock.now(), || self.gather());
        }
        let mut totals = Totals::default();
        let mut failure = None;
        for worker in self.workers.drain(..) {
            match worker.thread.join() {
                Ok(Ok(done)) => totals += done,
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(totals),
        }
    }

    /// Marks the workers whose exit notices came.
    fn note_exits(&mut self) {
        let mut notices = [0u8; 64];
        while let Ok(n) = (&self.exited).read(&mut notices) {
            if n == 0 {
                return;
            }
            for &index in &notices[..n] {
                if let Some(worker) = self.workers.get_mut(usize::from(index)) {
                    worker.ended = true;
                }
            }
        }
    }

    /// Tells every worker to stop.
    fn stop_all(&mut self) {
        self.stopping = true;
        self.tell_all(order::STOP);
    }

    /// Writes `order` on every live worker's control pipe.
    fn tell_all(&self, order: u8) {
        for worker in &self.workers {
            // A worker that has ended cannot hear it, and needs not.
            let _ = (&worker.control).write(&[order]);
        }
    }

    /// Every live worker's totals, added up.
    fn gather(&self) -> Totals {
        let live = self.workers.iter().filter(|w| !w.ended).count();
        self.tell_all(order::REPORT);
        let mut totals = Totals::default();
        let mut reported = 0;
        for (_, report) in daemon::receive_within(self.reports, live, REPORT_WAIT) {
            totals += report;
            reported += 1;
        }
        if reported < live {
            warn!("not every worker reported: the totals are partial");
        }
        totals
    }
}
