//! The machine alone, no sockets: how fast bytes go through it.
//!
//! - `throughput_16k`: one connection, 16 KiB per cycle: copy a source into
//!   `recv_buf`, `handle_received`, copy `send_buf` out to a sink,
//!   `handle_sent`. Floor: 2 GB/s.
//! - `cycle_64`: the same cycle with 64 bytes, counted in cycles. Floor:
//!   20 million per second.
//! - `cycle_64_x1000`: the 64-byte cycle over 1000 connections in turn, in
//!   a table of 1024 with 4 KiB queues.
//!
//! `cargo bench -p selecho-core --bench machine -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::thread;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use selecho_core::{Config, ConnId, Echo, Instant};

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
    assert_eq!(sink, source);
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
    assert_eq!(sink, source);
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
    assert_eq!(sink, source);
    assert_eq!(echo.counters().bytes_in, echo.counters().bytes_out);
}

criterion_group!(benches, throughput, small_cycles, many_connections);
criterion_main!(benches);
