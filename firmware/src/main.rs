//! The echo server firmware for QEMU's mps2-an385; see the crate docs and
//! `firmware/run`.

#![no_std]
#![no_main]

use cortex_m_rt::entry;
use semihosting::experimental::env;

use selecho_firmware::args::Settings;
use selecho_firmware::board::Mps2;
use selecho_firmware::config::{FirmwareStatics, SLOTS};
use selecho_firmware::fragments::MAX_DATAGRAM;
use selecho_firmware::server::{self, Board, Server, Statics};
use selecho_firmware::{command_line, exit};

/// Everything the server uses, in one static.
static STATICS: FirmwareStatics = Statics::new();

#[entry]
fn main() -> ! {
    let cmdline = env::args::<256>();
    let mut words = heapless::Vec::<&str, 24>::new();
    let settings = match cmdline
        .as_ref()
        .ok()
        .and_then(|c| command_line(c, &mut words))
    {
        Some(()) => Settings::parse(words.iter().copied(), SLOTS),
        None => Ok(Settings::new(SLOTS)),
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => {
            defmt::error!("invalid command line: {}", e);
            semihosting::process::exit(exit::USAGE);
        }
    };
    let mut board = match Mps2::take() {
        Ok(board) => board,
        Err(e) => {
            defmt::error!("board: {}", e);
            semihosting::process::exit(exit::FAILURE);
        }
    };
    let Ok(mac) = board.mac_address() else {
        defmt::error!("cannot read the MAC address");
        semihosting::process::exit(exit::FAILURE);
    };
    let seed = board.seed();
    let now = board.now();
    let mut server = match Server::new(&settings, board.device(), mac, seed, now, &STATICS) {
        Ok(server) => server,
        Err(e) => {
            defmt::error!("setting up the sockets: {}", e);
            semihosting::process::exit(exit::FAILURE);
        }
    };
    let [a, b, c, d] = settings.address.octets();
    defmt::info!(
        "mps2-an385: {=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x} at {}.{}.{}.{}/{}, {} connection slots, UDP datagrams up to {} bytes",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        a,
        b,
        c,
        d,
        settings.prefix,
        settings.max_conns,
        MAX_DATAGRAM
    );
    for port in &settings.ports {
        defmt::info!("listening on {}.{}.{}.{}:{} (tcp)", a, b, c, d, port);
    }
    for port in &settings.ports {
        defmt::info!("listening on {}.{}.{}.{}:{} (udp)", a, b, c, d, port);
    }
    server::run(&mut board, &mut server)
}
