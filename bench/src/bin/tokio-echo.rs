//! `tokio-echo`: the canonical tokio echo server, used only as a benchmark
//! reference. Prints `listening on ADDR` once bound.

use anyhow::Result;
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which tokio runtime to run on.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    /// Multi-threaded runtime with the default number of workers.
    Multi,
    /// Single-threaded runtime.
    Current,
}

/// RFC 862 echo server built the canonical tokio way.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Runtime flavour.
    #[arg(long, value_enum, default_value_t = Runtime::Multi)]
    runtime: Runtime,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = match args.runtime {
        Runtime::Multi => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        Runtime::Current => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    runtime.block_on(serve(&args.listen))
}

/// Binds, announces the address and accepts forever.
async fn serve(listen: &str) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    // Stdout is line-buffered: the line goes out at once, even to a pipe.
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        if let Err(e) = socket.set_nodelay(true) {
            eprintln!("set_nodelay: {e}");
        }
        tokio::spawn(async move {
            // Errors end only this connection, as in the canonical example.
            let _ = echo(socket).await;
        });
    }
}

/// Echoes until the peer closes.
async fn echo(mut socket: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        socket.write_all(&buf[..n]).await?;
    }
}
