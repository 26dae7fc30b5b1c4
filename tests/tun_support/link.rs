//! The kernel's side of the server's TUN/TAP device as a raw link: packets
//! written here go to the server as if from the wire, and every packet the
//! server writes to the device is seen here (an `AF_PACKET` socket bound
//! to the device; `SOCK_DGRAM`, so IP packets in both modes and the kernel
//! adds or strips the Ethernet header on TAP).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use smoltcp::wire::IpVersion;

/// EtherTypes, host order.
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;

/// A raw socket on one device.
pub struct Link {
    fd: OwnedFd,
    ifindex: i32,
    /// TAP: where frames to the server go (its MAC, once learnt; broadcast
    /// until then).
    server_mac: Option<[u8; 6]>,
}

/// A frame the server wrote: its EtherType and payload.
pub struct Frame {
    pub protocol: u16,
    pub payload: Vec<u8>,
    /// The sender's link-layer address (the server's MAC on TAP).
    pub source: [u8; 6],
}

impl Link {
    /// A raw link on `ifname`; `tap` if it is a TAP device.
    pub fn open(ifname: &str, tap: bool) -> Link {
        let name = std::ffi::CString::new(ifname).expect("an interface name");
        // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        assert!(ifindex > 0, "no interface {ifname}");
        let all = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: socket(2) takes no pointers.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, all) };
        assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: socket just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let addr = sockaddr(ifindex, libc::ETH_P_ALL as u16, None);
        // SAFETY: addr is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind to {ifname}: {}", io::Error::last_os_error());
        Link {
            fd,
            ifindex,
            server_mac: tap.then_some([0xff; 6]),
        }
    }

    /// Remembers where the server's frames come from (TAP).
    pub fn learn(&mut self, frame: &Frame) {
        if self.server_mac.is_some() {
            self.server_mac = Some(frame.source);
        }
    }

    /// Sends `payload` of EtherType `protocol` to the server.
    pub fn send(&self, protocol: u16, payload: &[u8]) {
        let addr = sockaddr(self.ifindex, protocol, self.server_mac);
        // SAFETY: payload is valid for its length, addr is a valid
        // sockaddr_ll of the size given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            payload.len() as isize,
            "send: {}",
            io::Error::last_os_error()
        );
    }

    /// Sends an IP packet to the server.
    pub fn send_ip(&self, packet: &[u8]) {
        let protocol = match IpVersion::of_packet(packet).expect("an IP packet") {
            IpVersion::Ipv4 => ETH_P_IP,
            IpVersion::Ipv6 => ETH_P_IPV6,
        };
        self.send(protocol, packet);
    }

    /// The next frame the server wrote, waiting until `deadline`.
    pub fn recv(&self, deadline: Instant) -> Option<Frame> {
        let mut buf = vec![0u8; 70_000];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.wait(left) {
                return None;
            }
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: buf and from are valid for writes of the sizes given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue; // our own, or the kernel's, on the way to the server
            }
            let mut source = [0; 6];
            source.copy_from_slice(&from.sll_addr[..6]);
            return Some(Frame {
                protocol: u16::from_be(from.sll_protocol),
                payload: buf[..n as usize].to_vec(),
                source,
            });
        }
    }

    /// Waits up to `limit` for the socket to be readable.
    fn wait(&self, limit: Duration) -> bool {
        let mut fds = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = limit.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fds, 1, ms) > 0 }
    }
}

/// A `sockaddr_ll` for `ifindex`, EtherType `protocol`, to `mac` if given.
fn sockaddr(ifindex: i32, protocol: u16, mac: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex;
    if let Some(mac) = mac {
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&mac);
    }
    addr
}
