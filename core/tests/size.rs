//! The table's overhead per connection, beyond the queue bytes themselves.

use core::mem::size_of;

use selecho_core::Echo;

const N: usize = 8;
const Q: usize = 1024;

fn overhead_per_connection<H: Copy>(name: &str) -> usize {
    let size = size_of::<Echo<H, N, Q>>();
    let per_connection = (size - N * Q) / N;
    println!(
        "Echo<{name}, {N}, {Q}>: {size} bytes, {per_connection} bytes per connection beyond its queue"
    );
    per_connection
}

#[test]
fn per_connection_overhead_is_at_most_64_bytes() {
    assert!(overhead_per_connection::<i32>("i32") <= 64);
    assert!(overhead_per_connection::<u16>("u16") <= 64);
    // An 8-byte handle (a smoltcp `SocketHandle` is smaller) pads each
    // slot's `Option<H>` to 16 bytes: 8 more than a 4-byte one.
    assert!(overhead_per_connection::<usize>("usize") <= 64 + 8);
}

/// Bytes per queued-datagram record and per rate-limit source, beyond the
/// byte store, for a peer type `P`.
fn datagram_costs<P: selecho_core::Peer>(name: &str) -> (usize, usize) {
    use selecho_core::DatagramEcho;
    let base = size_of::<DatagramEcho<P, 8, 2048, 8>>();
    let record = (size_of::<DatagramEcho<P, 16, 2048, 8>>() - base) / 8;
    let source = (size_of::<DatagramEcho<P, 8, 2048, 16>>() - base) / 8;
    println!(
        "DatagramEcho<{name}, 8, 2048, 8>: {base} bytes; {record} bytes per record, {source} per source"
    );
    (record, source)
}

#[test]
fn datagram_record_and_source_costs() {
    use std::net::{SocketAddr, SocketAddrV4};
    // A record is the address and 4 bytes of length and padding; a source
    // is its address and an 8-byte instant, aligned.
    let (record, source) = datagram_costs::<SocketAddr>("SocketAddr");
    assert!(record <= 36 && source <= 32);
    let (record, source) = datagram_costs::<SocketAddrV4>("SocketAddrV4");
    assert!(record <= 12 && source <= 16);
}

#[cfg(feature = "smoltcp")]
#[test]
fn smoltcp_datagram_costs() {
    use selecho_core::smoltcp::SmolUdpEcho;
    use smoltcp::socket::udp::UdpMetadata;
    // smoltcp keeps where the datagram was sent too, so the echo leaves
    // from there: two IPv4-or-IPv6 addresses.
    let (record, source) = datagram_costs::<UdpMetadata>("UdpMetadata");
    assert!(record <= 44 && source <= 32);
    let firmware = size_of::<SmolUdpEcho<8, 2048, 8>>();
    println!("SmolUdpEcho<8, 2048, 8>: {firmware} bytes");
    assert!(firmware <= 2048 + 8 * 44 + 8 * 32 + 256);
}
