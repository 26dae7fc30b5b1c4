//! `tokio-udp-echo`: the canonical tokio UDP echo server (one socket,
//! `recv_from` then `send_to`, current-thread runtime), used only as a
//! benchmark reference. Prints `listening on ADDR (udp)` once bound.

use anyhow::Result;
use clap::Parser;
use tokio::net::UdpSocket;

/// Largest UDP payload: no datagram is truncated.
const MAX_DATAGRAM: usize = 64 * 1024;

/// RFC 862 UDP echo server built the canonical tokio way.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(&args.listen))
}

/// Binds, announces the address and echoes every datagram to its sender.
async fn serve(listen: &str) -> Result<()> {
    let socket = UdpSocket::bind(listen).await?;
    // Stdout is line-buffered: the line goes out at once, even to a pipe.
    println!("listening on {} (udp)", socket.local_addr()?);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        socket.send_to(&buf[..n], peer).await?;
    }
}
