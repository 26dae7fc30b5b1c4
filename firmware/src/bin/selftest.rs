//! On-target tests: the LAN9118 driver against QEMU's chip (PHY loopback,
//! no network needed), the board's sleep and wake-ups, the command line,
//! the clock, and the echo machine through the core's simulator — all
//! compiled for and run on the Cortex-M3. The exit status (semihosting)
//! is QEMU's: 0 when every test passed.
//!
//! `cargo run --release --features selftest --bin selftest` (in `firmware/`).

#![no_std]
#![no_main]

use core::mem::size_of;
use core::net::Ipv4Addr;

use cortex_m_rt::entry;
use lan9118::{FRAME_LEN, Int, Lan9118, Mmio, Stats};
use selecho_core::sim::{ClientState, Sim};
use selecho_core::smoltcp::SmolEcho;
use selecho_core::{Config, DatagramConfig, DatagramCounters, Duration, Instant, RateLimit};
use smoltcp::iface::{Interface, SocketStorage};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::udp;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv4Repr,
};

use selecho_firmware::args::{ArgError, Flag, Settings, parse_seconds};
use selecho_firmware::board::{MAX_SLEEP, Mps2};
use selecho_firmware::clock::Clock;
use selecho_firmware::config::{FirmwareStatics, QUEUE, SLOTS, SOCKET_RX, SOCKET_TX, UDP_BUFFER};
use selecho_firmware::exit;
use selecho_firmware::fragments::{Counts, MAX_DATAGRAM, Screen};
use selecho_firmware::server::{Board, UDP_RECORDS, UdpEcho, table_bytes_per_connection};

/// Where a test failed.
struct Failure {
    line: u32,
}

type Outcome = Result<(), Failure>;

/// One test: it gets the board, brought up once for all of them.
type Test = fn(&mut Mps2) -> Outcome;

/// Fails the test (with its line) unless `$cond` holds.
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            defmt::error!("check failed: {=str}", stringify!($cond));
            return Err(Failure { line: line!() });
        }
    };
}

/// Fails the test unless `$left == $right`, showing both.
macro_rules! check_eq {
    ($left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            defmt::error!(
                "{=str} == {=str} failed: {} != {}",
                stringify!($left),
                stringify!($right),
                left,
                right
            );
            return Err(Failure { line: line!() });
        }
    }};
}

const TESTS: &[(&str, Test)] = &[
    ("args: defaults and every flag", args_defaults_and_flags),
    ("args: refusals", args_refusals),
    ("args: seconds", args_seconds),
    ("clock: counts across wraps", clock_counts_across_wraps),
    ("lan9118: MAC address", lan9118_mac_address),
    ("lan9118: frames loop back whole", lan9118_frames_loop_back),
    (
        "lan9118: oversized frame dropped",
        lan9118_oversized_frame_dropped,
    ),
    ("board: SysTick ends a sleep", board_systick_ends_a_sleep),
    ("board: a frame ends a sleep", board_frame_ends_a_sleep),
    ("machine: echoes every size", machine_echoes_every_size),
    ("machine: half-close drains", machine_half_close_drains),
    ("machine: idle timeout", machine_idle_timeout),
    ("machine: full table", machine_full_table),
    (
        "fragments: dropped and counted",
        fragments_dropped_and_counted,
    ),
    ("sizes: table per connection", sizes_table_per_connection),
    ("sizes: stack high-water mark", sizes_stack_high_water),
];

#[entry]
fn main() -> ! {
    let mut board = match Mps2::take() {
        Ok(board) => board,
        Err(e) => {
            defmt::error!("board: {}", e);
            semihosting::process::exit(exit::FAILURE);
        }
    };
    let mut failed = 0;
    for (name, test) in TESTS {
        match test(&mut board) {
            Ok(()) => defmt::info!("ok      {=str}", name),
            Err(failure) => {
                defmt::error!("FAILED  {=str} (line {})", name, failure.line);
                failed += 1;
            }
        }
    }
    defmt::info!("{} passed, {} failed", TESTS.len() - failed, failed);
    semihosting::process::exit(if failed == 0 { 0 } else { exit::FAILURE })
}

fn args_defaults_and_flags(_: &mut Mps2) -> Outcome {
    let defaults = Settings::parse([], 8).map_err(|_| Failure { line: line!() })?;
    check_eq!(defaults.address.octets(), [10, 88, 0, 2]);
    check_eq!(defaults.prefix, 24);
    check!(defaults.gateway.map(|g| g.octets()) == Some([10, 88, 0, 1]));
    check_eq!(defaults.ports.as_slice(), [7007].as_slice());
    check_eq!(defaults.max_conns, 8);
    check!(defaults.idle_timeout.is_none());
    check_eq!(defaults.udp_limit, Some(RateLimit::DEFAULT));

    let args = [
        "--address",
        "192.168.7.9/16",
        "--gateway",
        "192.168.0.1",
        "--port",
        "7",
        "--port",
        "7007",
        "--port",
        "7",
        "--max-conns",
        "3",
        "--idle-timeout",
        "0.3",
        "--udp-rate",
        "5",
        "--udp-burst",
        "2",
    ];
    let s = Settings::parse(args, 8).map_err(|_| Failure { line: line!() })?;
    check_eq!(s.address.octets(), [192, 168, 7, 9]);
    check_eq!(s.prefix, 16);
    check_eq!(s.ports.as_slice(), [7, 7007].as_slice());
    check_eq!(s.max_conns, 3);
    check!(s.idle_timeout == Some(Duration::from_millis(300)));
    check_eq!(s.udp_limit, Some(RateLimit::per_second(5, 2)));
    let none = Settings::parse(
        [
            "--gateway",
            "none",
            "--idle-timeout",
            "0",
            "--udp-rate",
            "0",
        ],
        8,
    );
    check!(
        none.is_ok_and(|s| s.gateway.is_none()
            && s.idle_timeout.is_none()
            && s.udp_limit.is_none())
    );
    Ok(())
}

fn args_refusals(_: &mut Mps2) -> Outcome {
    let refused = |args: &[&str]| Settings::parse(args.iter().copied(), 8).err();
    check!(refused(&["--verbose"]) == Some(ArgError::UnknownFlag));
    check!(refused(&["--port"]) == Some(ArgError::MissingValue(Flag::Port)));
    check!(refused(&["--port", "0"]) == Some(ArgError::BadValue(Flag::Port)));
    check!(refused(&["--port", "65536"]) == Some(ArgError::BadValue(Flag::Port)));
    check!(refused(&["--max-conns", "0"]) == Some(ArgError::BadValue(Flag::MaxConns)));
    check!(refused(&["--max-conns", "9"]) == Some(ArgError::BadValue(Flag::MaxConns)));
    check!(refused(&["--address", "10.0.0.1"]) == Some(ArgError::BadValue(Flag::Address)));
    check!(refused(&["--address", "10.0.0.1/32"]) == Some(ArgError::BadValue(Flag::Address)));
    check!(refused(&["--address", "10.0.0.256/8"]) == Some(ArgError::BadValue(Flag::Address)));
    check!(refused(&["--address", "224.0.0.1/8"]) == Some(ArgError::BadValue(Flag::Address)));
    check!(refused(&["--gateway", "10.88.1.1"]) == Some(ArgError::GatewayOffLink));
    check!(refused(&["--idle-timeout", "-1"]) == Some(ArgError::BadValue(Flag::IdleTimeout)));
    check!(refused(&["--udp-rate", "x"]) == Some(ArgError::BadValue(Flag::UdpRate)));
    check!(refused(&["--udp-rate", "4294967296"]) == Some(ArgError::BadValue(Flag::UdpRate)));
    check!(refused(&["--udp-burst", "0"]) == Some(ArgError::BadValue(Flag::UdpBurst)));
    let five = [
        "--port", "1", "--port", "2", "--port", "3", "--port", "4", "--port", "5",
    ];
    check!(refused(&five) == Some(ArgError::TooManyPorts));
    Ok(())
}

fn args_seconds(_: &mut Mps2) -> Outcome {
    check!(parse_seconds("2") == Some(Duration::from_secs(2)));
    check!(parse_seconds("0.3") == Some(Duration::from_millis(300)));
    check!(parse_seconds(".25") == Some(Duration::from_millis(250)));
    check!(parse_seconds("1.000001") == Some(Duration::from_micros(1_000_001)));
    for bad in [
        "",
        ".",
        "1.0000001",
        "1e3",
        "1,5",
        " 1",
        "18446744073709551616",
    ] {
        check!(parse_seconds(bad).is_none());
    }
    Ok(())
}

fn clock_counts_across_wraps(_: &mut Mps2) -> Outcome {
    let mut clock = Clock::new(u32::MAX - 49, 25);
    check_eq!(clock.now(u32::MAX - 49), Instant::ZERO);
    // 50 ticks to the wrap, 25 past it: 75 ticks, 3 µs.
    check_eq!(clock.now(25), Instant::from_micros(3));
    // Three more readings, a whole wrap in all: 2^32 ticks more.
    for raw in [1 << 30, 1 << 31, 3 << 30] {
        clock.now(raw);
    }
    check_eq!(clock.now(25), Instant::from_micros((75 + (1 << 32)) / 25));
    Ok(())
}

fn lan9118_mac_address(board: &mut Mps2) -> Outcome {
    let chip = board.device().chip();
    let original = chip.mac_address().map_err(|_| Failure { line: line!() })?;
    let ours = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    check!(chip.set_mac_address(ours).is_ok());
    check!(chip.mac_address() == Ok(ours));
    check!(chip.set_mac_address(original).is_ok());
    check!(chip.link_up() == Ok(true));
    Ok(())
}

/// A frame from and to `mac`, `len` bytes, its payload numbered by `seed`.
fn frame(mac: [u8; 6], len: usize, seed: u8, buf: &mut [u8]) -> &[u8] {
    let frame = &mut buf[..len];
    for (i, byte) in frame.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(13) ^ seed;
    }
    let header = len.min(12);
    frame[..header].copy_from_slice(&[mac, mac].as_flattened()[..header]);
    frame
}

/// Turns the PHY's loopback on (the test turns it off again) and drains
/// the status FIFOs: the chip's MAC address, and its counters then.
fn loop_back(chip: &mut Lan9118<Mmio>) -> Result<([u8; 6], Stats), Failure> {
    let mac = chip.mac_address().map_err(|_| Failure { line: line!() })?;
    check!(chip.set_loopback(true).is_ok());
    chip.service();
    Ok((mac, *chip.stats()))
}

fn lan9118_frames_loop_back(board: &mut Mps2) -> Outcome {
    let chip = board.device().chip();
    let (mac, before) = loop_back(chip)?;
    let (mut out, mut back) = ([0; 1600], [0; FRAME_LEN]);
    let lengths = [14, 42, 59, 60, 61, 62, 63, 64, 65, 1000, 1513, 1514];
    for (i, &len) in lengths.iter().enumerate() {
        let sent = frame(mac, len, i as u8, &mut out);
        check!(chip.send(sent).is_ok());
        // In loopback the frame is back as soon as its last word is written.
        check_eq!(chip.recv(&mut back), Some(len));
        check!(&back[..len] == sent);
    }
    check_eq!(chip.recv(&mut back), None);
    let status = chip.service();
    check!(status.intersects(Int::RSFL));
    let stats = *chip.stats();
    check_eq!(stats.rx_frames - before.rx_frames, lengths.len() as u32);
    check_eq!(stats.tx_frames - before.tx_frames, lengths.len() as u32);
    check_eq!(stats.errors(), before.errors());
    check!(chip.set_loopback(false).is_ok());
    Ok(())
}

fn lan9118_oversized_frame_dropped(board: &mut Mps2) -> Outcome {
    let chip = board.device().chip();
    let (mac, before) = loop_back(chip)?;
    let (mut out, mut back) = ([0; 1600], [0; FRAME_LEN]);
    check!(chip.send(frame(mac, 1600, 1, &mut out)).is_ok());
    check!(chip.send(frame(mac, 100, 2, &mut out)).is_ok());
    check_eq!(chip.recv(&mut back), Some(100));
    check!(back[..100] == *frame(mac, 100, 2, &mut out));
    check_eq!(chip.stats().rx_dropped - before.rx_dropped, 1);
    check!(chip.set_loopback(false).is_ok());
    Ok(())
}

fn board_systick_ends_a_sleep(board: &mut Mps2) -> Outcome {
    let start = board.begin_turn();
    board.sleep(Some(Duration::from_millis(20)));
    let slept = board.now() - start;
    check!(slept >= Duration::from_millis(20));
    check!(slept < Duration::from_millis(500));
    check!(MAX_SLEEP > Duration::from_secs(16));
    Ok(())
}

fn board_frame_ends_a_sleep(board: &mut Mps2) -> Outcome {
    let (mac, _) = loop_back(board.device().chip())?;
    let start = board.begin_turn();
    let mut out = [0; 64];
    check!(
        board
            .device()
            .chip()
            .send(frame(mac, 64, 3, &mut out))
            .is_ok()
    );
    board.sleep(Some(Duration::from_secs(5)));
    let slept = board.now() - start;
    check!(slept < Duration::from_millis(500));
    let mut back = [0; FRAME_LEN];
    check_eq!(board.device().chip().recv(&mut back), Some(64));
    check!(board.device().chip().set_loopback(false).is_ok());
    Ok(())
}

/// A simulator of 2 connections, 256-byte queues, 3 clients, 512-byte pipes.
type Small = Sim<2, 256, 3, 512>;

fn machine_echoes_every_size(_: &mut Mps2) -> Outcome {
    let mut sim = Small::new(Config::new());
    let client = sim.connect().map_err(|_| Failure { line: line!() })?;
    let mut data = [0u8; 1000];
    let mut got = [0u8; 1000];
    for (seed, len) in [1usize, 2, 7, 255, 256, 257, 511, 1000]
        .into_iter()
        .enumerate()
    {
        for (i, byte) in data[..len].iter_mut().enumerate() {
            *byte = (i * 7 + seed) as u8;
        }
        let (mut written, mut read) = (0, 0);
        while read < len {
            written += sim.write(client, &data[written..len]);
            check!(sim.drive().is_ok());
            read += sim.read(client, &mut got[read..len]);
        }
        check!(got[..len] == data[..len]);
    }
    Ok(())
}

fn machine_half_close_drains(_: &mut Mps2) -> Outcome {
    let mut sim = Small::new(Config::new());
    let client = sim.connect().map_err(|_| Failure { line: line!() })?;
    check_eq!(sim.write(client, &[5; 300]), 300);
    sim.shutdown_write(client);
    check!(sim.drive().is_ok());
    let mut got = [0; 512];
    check_eq!(sim.read(client, &mut got), 300);
    check!(got[..300].iter().all(|&b| b == 5));
    check!(sim.drive().is_ok());
    check_eq!(sim.state(client), ClientState::Eof);
    check_eq!(sim.echo().counters().closed, 1);
    Ok(())
}

fn machine_idle_timeout(_: &mut Mps2) -> Outcome {
    let config = Config::new().with_idle_timeout(Some(Duration::from_millis(300)));
    let mut sim = Small::new(config);
    let client = sim.connect().map_err(|_| Failure { line: line!() })?;
    check!(sim.drive().is_ok());
    sim.advance(Duration::from_millis(299));
    check!(sim.drive().is_ok());
    check_eq!(sim.state(client), ClientState::Open);
    check!(sim.step_to_deadline().is_some());
    check_eq!(sim.state(client), ClientState::Eof);
    check_eq!(sim.echo().counters().timed_out, 1);
    Ok(())
}

fn machine_full_table(_: &mut Mps2) -> Outcome {
    let mut sim = Small::new(Config::new());
    let a = sim.connect().map_err(|_| Failure { line: line!() })?;
    let _b = sim.connect().map_err(|_| Failure { line: line!() })?;
    let c = sim.connect().map_err(|_| Failure { line: line!() })?;
    check!(sim.drive().is_ok());
    check_eq!(sim.state(c), ClientState::Connecting);
    sim.shutdown_write(a);
    check!(sim.drive().is_ok());
    check_eq!(sim.state(a), ClientState::Eof);
    check_eq!(sim.state(c), ClientState::Open);
    Ok(())
}

/// The firmware's address in [`fragments_dropped_and_counted`], and a peer's.
const US: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);

/// An Ethernet frame to [`US`] of an IPv4 packet from `src` of protocol
/// `ip`, at fragment offset `offset` with more fragments (or not),
/// carrying `payload`.
fn ipv4_frame<'b>(
    buf: &'b mut [u8],
    src: Ipv4Addr,
    ip: IpProtocol,
    offset: u16,
    more: bool,
    payload: &[u8],
) -> &'b [u8] {
    let len = 14 + 20 + payload.len();
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..len]);
    frame.set_dst_addr(EthernetAddress([0x02, 0, 0, 0, 0, 2]));
    frame.set_src_addr(EthernetAddress([0x02, 0, 0, 0, 0, 1]));
    frame.set_ethertype(EthernetProtocol::Ipv4);
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: US,
        next_header: ip,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    repr.emit(&mut packet, &ChecksumCapabilities::default());
    packet.set_more_frags(more);
    packet.set_frag_offset(offset);
    packet.fill_checksum();
    packet.payload_mut().copy_from_slice(payload);
    &buf[..len]
}

/// The start of a UDP datagram of 3000 bytes from port `from` to port `to`
/// (checksum 0: none), as its first fragment carries it.
fn udp_head(from: u16, to: u16) -> [u8; 16] {
    let mut head = [0x5a; 16];
    head[..2].copy_from_slice(&from.to_be_bytes());
    head[2..4].copy_from_slice(&to.to_be_bytes());
    head[4..6].copy_from_slice(&3008u16.to_be_bytes());
    head[6..8].copy_from_slice(&[0, 0]);
    head
}

fn fragments_dropped_and_counted(_: &mut Mps2) -> Outcome {
    let own = DatagramConfig::new().with_own_ports([7007, 9, 0, 0]);
    let mut screen = Screen::new(US, own);
    let mut buf = [0; 128];
    let udp = IpProtocol::Udp;
    // Whole packets, and what is not IPv4 or does not parse, pass.
    check!(screen.admit(ipv4_frame(
        &mut buf,
        PEER,
        udp,
        0,
        false,
        &udp_head(5000, 7007)[..8]
    )));
    check!(screen.admit(ipv4_frame(
        &mut buf,
        PEER,
        IpProtocol::Tcp,
        0,
        false,
        &[0; 20]
    )));
    check!(screen.admit(&[0xff; 42]));
    check!(screen.admit(&[0; 10]));
    check_eq!(*screen.counts(), Counts::default());
    // The UDP packet among them was seen, once.
    check!(screen.take_udp());
    check!(!screen.take_udp());
    // A first fragment for a port of ours is a datagram too long.
    check!(!screen.admit(ipv4_frame(
        &mut buf,
        PEER,
        udp,
        0,
        true,
        &udp_head(5000, 7007)
    )));
    // From a loop port, or an own port: one never answered.
    check!(!screen.admit(ipv4_frame(&mut buf, PEER, udp, 0, true, &udp_head(19, 9))));
    check!(!screen.admit(ipv4_frame(&mut buf, PEER, udp, 0, true, &udp_head(7007, 9))));
    // Later fragments, fragments for other ports, of TCP, with a bad
    // header checksum, or from a source that is not unicast: fragments only.
    check!(!screen.admit(ipv4_frame(
        &mut buf,
        PEER,
        udp,
        1480,
        true,
        &udp_head(5000, 7007)
    )));
    check!(!screen.admit(ipv4_frame(&mut buf, PEER, udp, 2960, false, &[1; 40])));
    check!(!screen.admit(ipv4_frame(
        &mut buf,
        PEER,
        udp,
        0,
        true,
        &udp_head(5000, 53)
    )));
    check!(!screen.admit(ipv4_frame(
        &mut buf,
        PEER,
        IpProtocol::Tcp,
        0,
        true,
        &[0; 24]
    )));
    let bad = ipv4_frame(&mut buf, PEER, udp, 0, true, &udp_head(5000, 7007));
    let mut corrupt = [0; 128];
    corrupt[..bad.len()].copy_from_slice(bad);
    corrupt[14 + 10] ^= 0xff;
    check!(!screen.admit(&corrupt[..bad.len()]));
    let from_broadcast = Ipv4Addr::BROADCAST;
    check!(!screen.admit(ipv4_frame(
        &mut buf,
        from_broadcast,
        udp,
        0,
        true,
        &udp_head(5000, 7007)
    )));
    let counts = screen.counts();
    check_eq!(counts.fragments, 9);
    let udp = DatagramCounters {
        received: 3,
        dropped_truncated: 1,
        dropped_loop: 2,
        ..DatagramCounters::default()
    };
    check_eq!(counts.udp, udp);
    // No whole UDP packet among the fragments.
    check!(!screen.take_udp());
    Ok(())
}

/// Reports what the statics are made of; the bound on the table per
/// connection is `config.rs`'s, checked at compile time.
fn sizes_table_per_connection(_: &mut Mps2) -> Outcome {
    let table = table_bytes_per_connection::<QUEUE>();
    defmt::info!(
        "per connection: table {} bytes (machine and adapter, queue left out), queue {}, socket buffers {} + {}, smoltcp socket {}",
        table,
        QUEUE,
        SOCKET_RX,
        SOCKET_TX,
        size_of::<SocketStorage<'static>>()
    );
    defmt::info!(
        "statics: {} bytes in all; machine and adapter {}, interface {}; frame buffers {}",
        size_of::<FirmwareStatics>(),
        size_of::<SmolEcho<SLOTS, QUEUE>>(),
        size_of::<Interface>(),
        2 * FRAME_LEN
    );
    defmt::info!(
        "per UDP port: machine and adapter {} bytes (queue {}), socket buffers {} + {}, packet records {} + {}, smoltcp socket {}",
        size_of::<UdpEcho<UDP_BUFFER>>(),
        UDP_BUFFER,
        MAX_DATAGRAM,
        UDP_BUFFER,
        size_of::<udp::PacketMetadata>(),
        UDP_RECORDS * size_of::<udp::PacketMetadata>(),
        size_of::<SocketStorage<'static>>()
    );
    Ok(())
}

fn sizes_stack_high_water(board: &mut Mps2) -> Outcome {
    let (used, size) = board.stack_used();
    defmt::info!("stack: {} of {} bytes used by the tests", used, size);
    check!(used > 0);
    check!(used < size);
    Ok(())
}
