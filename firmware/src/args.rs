//! The firmware's command line: semihosting's, which `firmware/run` fills
//! in from its own flags.
//!
//! ```text
//! --address ADDR/PREFIX   IPv4 address of the firmware (default 10.88.0.2/24)
//! --gateway ADDR          the host's address on the link, the default route
//!                         (default 10.88.0.1; `none` for no route)
//! --port PORT             listen on PORT; repeat for several (default 7007)
//! --max-conns N           connections served at once, 1 to the build's slots
//! --idle-timeout SECS     close idle connections (default 0: never; e.g. 0.3)
//! --udp-rate N            UDP answers per second to one source address
//!                         (default 1000; 0: no limit, on a network of your own)
//! --udp-burst N           UDP answers one source may get at once (default 1000)
//! ```

use core::fmt;
use core::net::Ipv4Addr;

use selecho_core::{Duration, RateLimit};

/// Most ports the firmware listens on.
pub const MAX_PORTS: usize = 4;

/// UDP answers per second to one source address by default, as on the host.
const DEFAULT_UDP_RATE: u32 = 1_000;

/// What the firmware serves, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The firmware's address.
    pub address: Ipv4Addr,
    /// Its prefix length, 1 to 31.
    pub prefix: u8,
    /// Where packets for other subnets go.
    pub gateway: Option<Ipv4Addr>,
    /// Listening ports, each once, in the order given.
    pub ports: heapless::Vec<u16, MAX_PORTS>,
    /// Connections served at once.
    pub max_conns: usize,
    /// Idle connections close after this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// UDP answers per source address; `None`: no limit.
    pub udp_limit: Option<RateLimit>,
}

/// A flag of the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// `--address`.
    Address,
    /// `--gateway`.
    Gateway,
    /// `--port`.
    Port,
    /// `--max-conns`.
    MaxConns,
    /// `--idle-timeout`.
    IdleTimeout,
    /// `--udp-rate`.
    UdpRate,
    /// `--udp-burst`.
    UdpBurst,
}

impl Flag {
    /// The flag as written.
    pub const fn name(self) -> &'static str {
        match self {
            Flag::Address => "--address",
            Flag::Gateway => "--gateway",
            Flag::Port => "--port",
            Flag::MaxConns => "--max-conns",
            Flag::IdleTimeout => "--idle-timeout",
            Flag::UdpRate => "--udp-rate",
            Flag::UdpBurst => "--udp-burst",
        }
    }

    fn from_name(name: &str) -> Option<Flag> {
        [
            Flag::Address,
            Flag::Gateway,
            Flag::Port,
            Flag::MaxConns,
            Flag::IdleTimeout,
            Flag::UdpRate,
            Flag::UdpBurst,
        ]
        .into_iter()
        .find(|flag| flag.name() == name)
    }
}

/// Why the command line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// Not a flag this firmware knows.
    UnknownFlag,
    /// The flag's value is missing.
    MissingValue(Flag),
    /// The flag's value is not valid.
    BadValue(Flag),
    /// More than [`MAX_PORTS`] ports.
    TooManyPorts,
    /// The gateway is not on the firmware's subnet.
    GatewayOffLink,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::UnknownFlag => f.write_str("unknown flag"),
            ArgError::MissingValue(flag) => write!(f, "{} needs a value", flag.name()),
            ArgError::BadValue(flag) => write!(f, "invalid value for {}", flag.name()),
            ArgError::TooManyPorts => write!(f, "at most {MAX_PORTS} ports"),
            ArgError::GatewayOffLink => f.write_str("the gateway is not on the address's subnet"),
        }
    }
}

impl defmt::Format for ArgError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            ArgError::UnknownFlag => defmt::write!(f, "unknown flag"),
            ArgError::MissingValue(flag) => defmt::write!(f, "{=str} needs a value", flag.name()),
            ArgError::BadValue(flag) => defmt::write!(f, "invalid value for {=str}", flag.name()),
            ArgError::TooManyPorts => defmt::write!(f, "at most {=usize} ports", MAX_PORTS),
            ArgError::GatewayOffLink => {
                defmt::write!(f, "the gateway is not on the address's subnet")
            }
        }
    }
}

impl Settings {
    /// The defaults: 10.88.0.2/24 via 10.88.0.1, port 7007, `max_conns`
    /// connections, no idle timeout, the default UDP rate limit.
    pub fn new(max_conns: usize) -> Settings {
        let mut ports = heapless::Vec::new();
        // Cannot fail: MAX_PORTS > 0.
        let _ = ports.push(7007);
        Settings {
            address: Ipv4Addr::new(10, 88, 0, 2),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(10, 88, 0, 1)),
            ports,
            max_conns,
            idle_timeout: None,
            udp_limit: Some(RateLimit::DEFAULT),
        }
    }

    /// Settings from `args` (flags and values, without the program's
    /// name), starting from the defaults; `slots` bounds `--max-conns` and
    /// is its default.
    pub fn parse<'a, I>(args: I, slots: usize) -> Result<Settings, ArgError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut settings = Settings::new(slots);
        let mut ports: heapless::Vec<u16, MAX_PORTS> = heapless::Vec::new();
        let (mut udp_rate, mut udp_burst) = (DEFAULT_UDP_RATE, RateLimit::DEFAULT.burst);
        let mut args = args.into_iter();
        while let Some(name) = args.next() {
            let flag = Flag::from_name(name).ok_or(ArgError::UnknownFlag)?;
            let value = args.next().ok_or(ArgError::MissingValue(flag))?;
            let bad = ArgError::BadValue(flag);
            match flag {
                Flag::Address => {
                    let (address, prefix) = value.split_once('/').ok_or(bad)?;
                    settings.address = address.parse().map_err(|_| bad)?;
                    settings.prefix = prefix
                        .parse()
                        .ok()
                        .filter(|p| (1..=31).contains(p))
                        .ok_or(bad)?;
                    let a = settings.address;
                    if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback()
                    {
                        return Err(bad);
                    }
                }
                Flag::Gateway => {
                    settings.gateway = match value {
                        "none" => None,
                        _ => Some(value.parse().map_err(|_| bad)?),
                    };
                }
                Flag::Port => {
                    let port: u16 = value.parse().ok().filter(|&p| p != 0).ok_or(bad)?;
                    if !ports.contains(&port) {
                        ports.push(port).map_err(|_| ArgError::TooManyPorts)?;
                    }
                }
                Flag::MaxConns => {
                    settings.max_conns = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=slots).contains(n))
                        .ok_or(bad)?;
                }
                Flag::IdleTimeout => {
                    let timeout = parse_seconds(value).ok_or(bad)?;
                    settings.idle_timeout = (timeout != Duration::ZERO).then_some(timeout);
                }
                Flag::UdpRate => udp_rate = value.parse().map_err(|_| bad)?,
                Flag::UdpBurst => {
                    udp_burst = value.parse().ok().filter(|&n| n > 0).ok_or(bad)?;
                }
            }
        }
        settings.udp_limit = (udp_rate > 0).then(|| RateLimit::per_second(udp_rate, udp_burst));
        if !ports.is_empty() {
            settings.ports = ports;
        }
        if let Some(gateway) = settings.gateway
            && !same_subnet(settings.address, gateway, settings.prefix)
        {
            return Err(ArgError::GatewayOffLink);
        }
        Ok(settings)
    }
}

/// Whether `a` and `b` share their first `prefix` bits.
fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX << (32 - u32::from(prefix));
    a.to_bits() & mask == b.to_bits() & mask
}

/// `SECS` with up to six decimals (`2`, `0.3`, `1.250`) as a duration.
pub fn parse_seconds(s: &str) -> Option<Duration> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 6 {
        return None;
    }
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut micros: u64 = 0;
    for i in 0..6 {
        let digit = fraction.as_bytes().get(i).map_or(0, |b| b - b'0');
        micros = micros * 10 + u64::from(digit);
    }
    Some(Duration::from_micros(
        secs.checked_mul(1_000_000)?.checked_add(micros)?,
    ))
}
