//! The controller as a smoltcp [`phy::Device`].
//!
//! The device owns two frame buffers lent to it for good (statics, on a
//! microcontroller): every received frame is read into the one and every
//! frame smoltcp builds is built in the other, so nothing is allocated per
//! packet. A frame is read from the chip when smoltcp asks for one, and
//! written to it as soon as smoltcp has built it.

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::bus::Registers;
use crate::chip::Lan9118;

/// The largest Ethernet frame without its FCS: an IP MTU of 1500 plus the
/// 14-byte header. Size both buffers with it.
pub const FRAME_LEN: usize = 1514;

/// Full-size frames the chip's RX data FIFO holds (10,560 bytes with the
/// reset default `HW_CFG.TX_FIF_SZ`, each frame with its FCS and status):
/// more in one burst and the chip drops frames. smoltcp caps each
/// socket's advertised window to this many segments.
const RX_FIFO_FRAMES: usize = 6;

/// A LAN9118 and its two frame buffers.
#[derive(Debug)]
pub struct Device<'b, R> {
    chip: Lan9118<R>,
    rx: &'b mut [u8],
    tx: &'b mut [u8],
}

impl<'b, R: Registers> Device<'b, R> {
    /// A device over `chip` (brought up with [`Lan9118::init`]), receiving
    /// into `rx` and building frames in `tx`. smoltcp's MTU is the
    /// transmit buffer's length, at most [`FRAME_LEN`]; received frames
    /// longer than `rx` are dropped and counted.
    pub fn new(chip: Lan9118<R>, rx: &'b mut [u8], tx: &'b mut [u8]) -> Self {
        Device { chip, rx, tx }
    }

    /// The controller, for its counters, its clock and [`Lan9118::service`].
    pub fn chip(&mut self) -> &mut Lan9118<R> {
        &mut self.chip
    }

    fn mtu(&self) -> usize {
        self.tx.len().min(FRAME_LEN)
    }
}

impl<R: Registers> phy::Device for Device<'_, R> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, R>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_, R>)> {
        let mtu = self.mtu();
        let Device { chip, rx, tx } = self;
        let len = chip.recv(rx)?;
        let rx = RxToken { frame: &rx[..len] };
        let tx = TxToken {
            chip,
            buf: &mut tx[..mtu],
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_, R>> {
        let mtu = self.mtu();
        if !self.chip.tx_room(mtu) {
            return None;
        }
        Some(TxToken {
            chip: &mut self.chip,
            buf: &mut self.tx[..mtu],
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu();
        caps.max_burst_size = Some(RX_FIFO_FRAMES);
        // No checksum offload on the LAN9118: smoltcp computes and checks all.
        caps
    }
}

/// A received frame, lent from the device's receive buffer.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<T, F>(self, f: F) -> T
    where
        F: FnOnce(&[u8]) -> T,
    {
        f(self.frame)
    }
}

/// Room for one frame to send, lent from the device's transmit buffer.
pub struct TxToken<'a, R> {
    chip: &'a mut Lan9118<R>,
    /// The whole buffer, MTU bytes.
    buf: &'a mut [u8],
}

impl<R: Registers> phy::TxToken for TxToken<'_, R> {
    fn consume<T, F>(self, len: usize, f: F) -> T
    where
        F: FnOnce(&mut [u8]) -> T,
    {
        // smoltcp asks for at most the MTU, which is the buffer's length.
        let len = len.min(self.buf.len());
        let frame = &mut self.buf[..len];
        let result = f(frame);
        // A frame the FIFO cannot take is lost, as on a wire, and counted;
        // TCP sends it again.
        let _ = self.chip.send(frame);
        result
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use smoltcp::phy::{Device as _, RxToken as _, TxToken as _};

    use super::*;
    use crate::model::Model;

    #[test]
    fn tokens_lend_the_buffers() {
        let mut chip = Lan9118::new(Model::new());
        chip.init(None).expect("init");
        let (mut rx, mut tx) = ([0; FRAME_LEN], [0; FRAME_LEN]);
        let mut device = Device::new(chip, &mut rx, &mut tx);
        let now = Instant::ZERO;
        assert!(device.receive(now).is_none());
        assert_eq!(device.capabilities().max_transmission_unit, FRAME_LEN);

        device.chip().regs_mut().deliver(&[7; 60], false);
        let (rx, tx) = device.receive(now).expect("a frame");
        assert_eq!(rx.consume(|frame| frame.to_vec()), [7; 60]);
        tx.consume(42, |buf| buf.fill(1));
        let token = device.transmit(now).expect("room");
        token.consume(64, |buf| buf.fill(2));
        let sent = &device.chip().regs_mut().sent;
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], [1; 42]);
        assert_eq!(sent[1], [2; 64]);

        device.chip().regs_mut().tx_free = 0;
        assert!(device.transmit(now).is_none(), "no room, no token");
    }
}
