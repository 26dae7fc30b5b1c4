//! What this build's statics are sized by. Each connection slot costs
//! `QUEUE + SOCKET_RX + SOCKET_TX` bytes of buffers, a smoltcp socket
//! and [`table_bytes_per_connection`](crate::server::table_bytes_per_connection).

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

/// The server's statics for this build.
pub type FirmwareStatics = Statics<SLOTS, QUEUE, SOCKET_RX, SOCKET_TX>;

// The table costs at most 64 bytes per connection beyond the queue.
const _: () = assert!(table_bytes_per_connection::<QUEUE>() <= 64);
