//! The machine alone, no sockets: how fast bytes go through it.
//!
//! - `throughput_16k`: one connection, 16 KiB per cycle: copy a source into
//!   `recv_buf`, `handle_received`, copy `send_buf` out to a sink,
//!   `handle_sent`. Floor: 2 GB/s.
//! - `cycle_64`: the same cycle with 64 bytes, counted in cycles. Floor:
//!   20 million per second.
//! - `cycle_64_x1000`: the 64-byte cycle over 1000 connections in turn, in
//!   a table of 1024 with 4 KiB queues.
//! - `udp_64`, `udp_1400`: one datagram through the datagram machine:
//!   receive it into `recv_buf`, `handle_received`, copy `poll_transmit`'s
//!   payload out, `handle_sent`; the default rate limit on, one source
//!   (the clock moves one interval a datagram, so nothing is limited).
//! - `udp_64_x64`: the same with 64 sources in turn, in a 64-entry
//!   rate-limit table (the table is searched linearly).
//!
//! `cargo bench -p selecho-core --bench machine -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::thread;

use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use selecho_core::{Config, ConnId, DatagramConfig, DatagramEcho, Duration, Echo, Instant};

const CHUNK: usize = 16 * 1024;
const SMALL: usize = 64;
const CONNECTIONS: usize = 1000;

/// One read and one send of `source.len()` bytes on `id`.
#[inline]
fn cycle<const N: usize, const Q: usize>(
    echo: &mut Echo<i32, N, Q>,
    id: ConnId,
    source: &[u8],
    sink: &mut [u8],
    now: Instant,
) {
    let buf = echo.recv_buf(id).expect("live connection");
    let n = source.len();
    buf[..n].copy_from_slice(source);
    echo.handle_received(id, n, now)
        .expect("room for the chunk");
    let data = echo.send_buf(id).expect("live connection");
    let m = data.len();
    sink[..m].copy_from_slice(data);
    echo.handle_sent(id, m, now).expect("sent what was offered");
}

/// Builds a machine on the heap in a thread with stack to spare: a
/// multi-MiB `Echo` passes through the stack on its way into the box.
fn boxed<const N: usize, const Q: usize>(config: Config) -> Box<Echo<i32, N, Q>> {
    thread::Builder::new()
        .stack_size(4 * size_of::<Echo<i32, N, Q>>() + (1 << 20))
        .spawn(move || Box::new(Echo::new(config)))
        .expect("spawn a builder thread")
        .join()
        .expect("build the machine")
}

fn throughput(c: &mut Criterion) {
    let mut echo = boxed::<1, CHUNK>(Config::new());
    let id = echo.handle_accept(3, Instant::ZERO).expect("room");
    let source: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
    let mut sink = vec![0; CHUNK];
    let now = Instant::from_secs(1);

    let mut group = c.benchmark_group("machine");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    group.bench_function("throughput_16k", |b| {
        b.iter(|| {
            cycle(&mut echo, id, black_box(&source), &mut sink, now);
            black_box(&mut sink);
        });
    });
    group.finish();
    assert!(
        echo.counters().bytes_in == 0 || sink == source,
        "echoed bytes differ"
    );
}

fn small_cycles(c: &mut Criterion) {
    let mut echo = boxed::<1, 4096>(Config::new());
    let id = echo.handle_accept(3, Instant::ZERO).expect("room");
    let source = [0x5a; SMALL];
    let mut sink = [0; SMALL];
    let now = Instant::from_secs(1);

    let mut group = c.benchmark_group("machine");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cycle_64", |b| {
        b.iter(|| {
            cycle(&mut echo, id, black_box(&source), &mut sink, now);
            black_box(&mut sink);
        });
    });
    group.finish();
    assert!(
        echo.counters().bytes_in == 0 || sink == source,
        "echoed bytes differ"
    );
}

fn many_connections(c: &mut Criterion) {
    let mut echo = boxed::<1024, 4096>(Config::new());
    let ids: Vec<ConnId> = (0..CONNECTIONS as i32)
        .map(|fd| echo.handle_accept(fd, Instant::ZERO).expect("room"))
        .collect();
    let source = [0xa5; SMALL];
    let mut sink = [0; SMALL];
    let now = Instant::from_secs(1);

    let mut group = c.benchmark_group("machine");
    group.throughput(Throughput::Elements(CONNECTIONS as u64));
    group.bench_function("cycle_64_x1000", |b| {
        b.iter(|| {
            for &id in &ids {
                cycle(&mut echo, id, black_box(&source), &mut sink, now);
                black_box(&mut sink);
            }
        });
    });
    group.finish();
    assert!(
        echo.counters().bytes_in == 0 || sink == source,
        "echoed bytes differ"
    );
    assert_eq!(echo.counters().bytes_in, echo.counters().bytes_out);
}

/// 64 datagrams in 64 KiB, rate-limit buckets for 64 sources.
type Datagrams = DatagramEcho<SocketAddr, 64, 65_536, 64>;

/// One datagram in (zero-copy) and out again.
#[inline]
fn datagram_cycle(
    echo: &mut Datagrams,
    from: SocketAddr,
    source: &[u8],
    sink: &mut [u8],
    now: Instant,
) {
    let buf = echo.recv_buf();
    buf[..source.len()].copy_from_slice(source);
    echo.handle_received(from, source.len(), now)
        .expect("queued");
    let t = echo.poll_transmit().expect("a datagram to send");
    sink[..t.payload.len()].copy_from_slice(t.payload);
    echo.handle_sent().expect("sent");
}

fn datagrams(c: &mut Criterion) {
    let interval = Duration::from_millis(1);
    let mut group = c.benchmark_group("machine");
    group.throughput(Throughput::Elements(1));
    for (name, size, sources) in [
        ("udp_64", 64, 1),
        ("udp_1400", 1400, 1),
        ("udp_64_x64", 64, 64),
    ] {
        let mut echo = Box::new(Datagrams::new(DatagramConfig::new()));
        let peers: Vec<SocketAddr> = (0..sources)
            .map(|i| SocketAddr::from(([10, 0, 0, i as u8 + 1], 40_000)))
            .collect();
        let source = vec![0x3c; size];
        let mut sink = vec![0; size];
        let mut now = Instant::from_secs(1);
        let mut turn = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                now = now + interval;
                turn = (turn + 1) % peers.len();
                datagram_cycle(&mut echo, peers[turn], black_box(&source), &mut sink, now);
                black_box(&mut sink);
            });
        });
        // Checked only when the bench ran (a name filter skips it).
        assert!(
            echo.counters().received == 0 || sink == source,
            "echoed bytes differ"
        );
        assert_eq!(echo.counters().dropped(), 0);
    }
    group.finish();
}

criterion_group!(
    benches,
    throughput,
    small_cycles,
    many_connections,
    datagrams
);
criterion_main!(benches);
