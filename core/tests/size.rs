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
