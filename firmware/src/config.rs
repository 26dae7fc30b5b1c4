//! What this build's statics are sized by. Each connection slot costs
//! `QUEUE + SOCKET_RX + SOCKET_TX` bytes of buffers, a smoltcp socket and
//! [`table_bytes_per_connection`]; each port's UDP echo `2 × UDP_BUFFER`
//! bytes, a receive buffer of one datagram of the largest size
//! ([`MAX_DATAGRAM`](crate::fragments::MAX_DATAGRAM)), a smoltcp socket
//! and the machine's records.

use crate::args::MAX_PORTS;
use crate::server::{Statics, table_bytes_per_connection};

/// Connection slots (smoltcp sockets and machine slots).
pub const SLOTS: usize = 8;
/// Bytes a connection may hold in the machine between receiving and echoing.
pub const QUEUE: usize = 1024;
/// smoltcp receive buffer per socket: the TCP window offered. The LAN9118
/// holds about six full frames; small windows keep bursts under that.
pub const SOCKET_RX: usize = 2048;
/// smoltcp send buffer per socket.
pub const SOCKET_TX: usize = 2048;
/// Bytes of each port's UDP queue (the machine's store: datagrams waiting
/// while smoltcp's transmit buffer is full) and of its smoltcp transmit
/// buffer: each holds one datagram of the largest size, or several small.
pub const UDP_BUFFER: usize = 2048;

/// The server's statics for this build: a smoltcp socket per slot and one
/// per port for UDP.
pub type FirmwareStatics =
    Statics<SLOTS, QUEUE, SOCKET_RX, SOCKET_TX, UDP_BUFFER, { SLOTS + MAX_PORTS }>;

// The table costs at most 64 bytes per connection beyond the queue.
const _: () = assert!(table_bytes_per_connection::<QUEUE>() <= 64);
