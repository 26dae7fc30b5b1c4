//! Socket activation, as systemd does it (`sd_listen_fds(3)`): started with
//! `LISTEN_PID` naming this process and `LISTEN_FDS=n`, selecho serves the
//! n sockets the activator bound (and may have held while nobody served)
//! instead of binding its own: listening TCP sockets and UDP sockets alike.
//! `LISTEN_FDNAMES` is not needed; the variables are left as they are
//! (selecho starts no children). Taking the descriptors is `sys`'s
//! ([`net::activated_sockets`]); sorting them is here.

use std::net::{TcpListener, UdpSocket};

use anyhow::{Context, bail};
use socket2::{Socket, Type};

use crate::sys::net;

/// The sockets handed over, if this process was socket-activated.
pub fn inherited() -> anyhow::Result<Option<Vec<Socket>>> {
    net::activated_sockets().context("socket activation")
}

/// The handed-over sockets sorted by kind, ready to serve (non-blocking,
/// close-on-exec; on TCP urgent data inline and no Nagle delay, which the
/// accepted sockets inherit, as from [`setup`](super::setup)'s listeners).
/// Each must be a listening TCP socket or a UDP socket.
pub fn split(sockets: Vec<Socket>) -> anyhow::Result<(Vec<TcpListener>, Vec<UdpSocket>)> {
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    for (i, socket) in sockets.into_iter().enumerate() {
        let what = || format!("socket activation: socket {}", i + 3);
        let kind = socket.r#type().with_context(what)?;
        socket.set_nonblocking(true).with_context(what)?;
        socket.set_cloexec(true).with_context(what)?;
        if kind == Type::STREAM && socket.is_listener().with_context(what)? {
            socket.set_out_of_band_inline(true).with_context(what)?;
            socket.set_tcp_nodelay(true).with_context(what)?;
            tcp.push(socket.into());
        } else if kind == Type::DGRAM {
            udp.push(socket.into());
        } else {
            bail!(
                "{}: neither a listening TCP socket nor a UDP socket",
                what()
            );
        }
    }
    Ok((tcp, udp))
}
