//! A short run of the benchmark's verifying load generator against the real
//! select shell: ping-pong and full-duplex stream, every byte checked.
//! (The long, interleaved runs against tokio are `selecho-bench`, not a test.)

use selecho_bench::load::{self, Config, Mode};
use selecho_testkit::process::ServerProcess;
use selecho_testkit::selecho;

fn run(mode: Mode, conns: usize, size: usize) {
    let mut cmd = selecho!();
    cmd.args(["--listen", "127.0.0.1:0", "-q"]);
    let server = ServerProcess::start(cmd, 1);
    let result = load::run(&Config {
        addr: server.addr(),
        conns,
        size,
        secs: 0.5,
        warmup: 0.1,
        mode,
        threads: 1,
        pid: Some(server.pid()),
    })
    .expect("load run");
    assert_eq!(result.connected, conns, "every connection established");
    assert_eq!(
        result.errors.total(),
        0,
        "no mismatch, reset or failed connect: {:?}",
        result.errors
    );
    assert!(result.messages > 0, "some messages echoed");
    assert!(
        result.server_cpu_s.is_some(),
        "server CPU time read from /proc"
    );
}

#[test]
fn pingpong_100_connections() {
    run(Mode::Pingpong, 100, 64);
}

#[test]
fn stream_4_connections() {
    run(Mode::Stream, 4, 16 * 1024);
}
