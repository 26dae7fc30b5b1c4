//! The LAN9118's register map: where each register is, and typed views of
//! the ones whose bits the driver reads or writes.
//!
//! Offsets and bits follow the SMSC LAN9118 datasheet (rev. 1.5) for the
//! 32-bit bus. The controller has three address spaces: the system control
//! and status registers (CSRs) and FIFO ports on the bus ([`Reg`]), the MAC
//! registers behind the `MAC_CSR_CMD`/`MAC_CSR_DATA` window ([`MacReg`]),
//! and the PHY's registers behind the MAC's MII window ([`PhyReg`]).

/// A register (or FIFO port) on the bus, by its byte offset from the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Reg {
    /// RX data FIFO port (aliased over 0x00..0x1c): pops one word of the frame being read.
    RxData = 0x00,
    /// TX data FIFO port (aliased over 0x20..0x3c): pushes command words, then frame words.
    TxData = 0x20,
    /// RX status FIFO port: pops one [`RxStatus`].
    RxStatus = 0x40,
    /// TX status FIFO port: pops one [`TxStatus`].
    TxStatus = 0x48,
    /// Chip id (high half) and revision (low half): see [`ChipId`].
    IdRev = 0x50,
    /// Interrupt pin configuration: [`irq_cfg`].
    IrqCfg = 0x54,
    /// Interrupt status, write 1 to clear: [`Int`].
    IntSts = 0x58,
    /// Interrupt enables: [`Int`].
    IntEn = 0x5c,
    /// Reads [`BYTE_TEST`] whatever the bus's byte order.
    ByteTest = 0x64,
    /// FIFO levels that raise interrupts: [`fifo_int`].
    FifoInt = 0x68,
    /// Receive configuration (offset, end alignment: the reset defaults).
    RxCfg = 0x6c,
    /// Transmit configuration: [`tx_cfg`].
    TxCfg = 0x70,
    /// Hardware configuration, soft reset: [`hw_cfg`].
    HwCfg = 0x74,
    /// RX FIFO fill levels: [`RxFifoInf`].
    RxFifoInf = 0x7c,
    /// TX FIFO fill levels: [`TxFifoInf`].
    TxFifoInf = 0x80,
    /// Power management, device ready: [`pmt_ctrl`].
    PmtCtrl = 0x84,
    /// A 32-bit counter at 25 MHz, free running from reset.
    FreeRun = 0x9c,
    /// Frames dropped for want of FIFO room since the last read (read clears).
    RxDrop = 0xa0,
    /// MAC register window, command: [`mac_csr_cmd`].
    MacCsrCmd = 0xa4,
    /// MAC register window, data.
    MacCsrData = 0xa8,
}

impl Reg {
    /// Byte offset from the controller's base address.
    pub const fn offset(self) -> usize {
        self as usize
    }
}

/// What [`Reg::ByteTest`] reads on a correctly wired 32-bit bus.
pub const BYTE_TEST: u32 = 0x8765_4321;

/// A MAC register, reached through [`Reg::MacCsrCmd`] and [`Reg::MacCsrData`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum MacReg {
    /// MAC control: [`mac_cr`].
    Cr = 1,
    /// MAC address, bytes 4 and 5 (low half, little-endian).
    AddrH = 2,
    /// MAC address, bytes 0 to 3 (little-endian).
    AddrL = 3,
    /// MII (PHY) access command: [`mii_acc`].
    MiiAcc = 6,
    /// MII (PHY) data, low 16 bits.
    MiiData = 7,
}

/// A register of the internal PHY, reached through [`MacReg::MiiAcc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum PhyReg {
    /// Basic control: [`phy_bcr`].
    BasicControl = 0,
    /// Basic status: [`phy_bsr`].
    BasicStatus = 1,
}

/// The internal PHY's address on the MII bus.
pub const PHY_ADDRESS: u32 = 1;

/// `IRQ_CFG` bits.
pub mod irq_cfg {
    /// The IRQ pin is push-pull (else open drain).
    pub const IRQ_TYPE: u32 = 1 << 0;
    /// The IRQ pin is active high (needs [`IRQ_TYPE`]).
    pub const IRQ_POL: u32 = 1 << 4;
    /// The IRQ pin is driven at all.
    pub const IRQ_EN: u32 = 1 << 8;
}

/// `FIFO_INT` fields.
pub mod fifo_int {
    /// RX status level: [`Int::RSFL`](super::Int::RSFL) once more than this
    /// many statuses wait (bits 7:0).
    pub const RX_STATUS_LEVEL_MASK: u32 = 0xff;
}

/// `TX_CFG` bits.
pub mod tx_cfg {
    /// The transmitter is on.
    pub const TX_ON: u32 = 1 << 1;
}

/// `HW_CFG` bits.
pub mod hw_cfg {
    /// Soft reset; reads 1 until the reset is done.
    pub const SRST: u32 = 1 << 0;
}

/// `PMT_CTRL` bits.
pub mod pmt_ctrl {
    /// The device is ready to be accessed (after power-up or reset).
    pub const READY: u32 = 1 << 0;
}

/// `MAC_CSR_CMD` bits.
pub mod mac_csr_cmd {
    /// Start a MAC register access; reads 1 until it is done.
    pub const BUSY: u32 = 1 << 31;
    /// The access is a read (else a write).
    pub const READ: u32 = 1 << 30;
    /// The MAC register index (bits 7:0).
    pub const INDEX_MASK: u32 = 0xff;
}

/// `MAC_CR` bits.
pub mod mac_cr {
    /// Receiver enabled.
    pub const RXEN: u32 = 1 << 2;
    /// Transmitter enabled.
    pub const TXEN: u32 = 1 << 3;
    /// Broadcast frames refused (else received).
    pub const BCAST: u32 = 1 << 11;
    /// Promiscuous: every frame is received.
    pub const PRMS: u32 = 1 << 18;
    /// Full duplex.
    pub const FDPX: u32 = 1 << 20;
}

/// `MII_ACC` fields.
pub mod mii_acc {
    /// Start a PHY access; reads 1 until it is done.
    pub const BUSY: u32 = 1 << 0;
    /// The access is a write (else a read).
    pub const WRITE: u32 = 1 << 1;
    /// Where the PHY register index goes (bits 10:6).
    pub const INDEX_SHIFT: u32 = 6;
    /// Where the PHY address goes (bits 15:11).
    pub const PHY_SHIFT: u32 = 11;
}

/// PHY basic control register bits.
pub mod phy_bcr {
    /// Loops frames sent back to the receiver, without the wire.
    pub const LOOPBACK: u16 = 1 << 14;
    /// Auto-negotiation enabled.
    pub const AUTONEG: u16 = 1 << 12;
}

/// PHY basic status register bits.
pub mod phy_bsr {
    /// The link is up.
    pub const LINK_UP: u16 = 1 << 2;
}

/// The chip's id and revision, from [`Reg::IdRev`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChipId(pub u32);

impl ChipId {
    /// The part number: `0x0118` for a LAN9118.
    pub const fn id(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The revision.
    pub const fn revision(self) -> u16 {
        self.0 as u16
    }

    /// Whether this driver knows the part: the LAN9115 to LAN9118 and the
    /// register-compatible LAN9210 to LAN9221 (the MPS2 board carries a
    /// LAN9220; QEMU models a LAN9118).
    pub const fn is_supported(self) -> bool {
        matches!(self.id(), 0x0115..=0x0118 | 0x9210..=0x9221)
    }
}

/// Interrupt status ([`Reg::IntSts`]) and enable ([`Reg::IntEn`]) bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Int(pub u32);

impl Int {
    /// RX status FIFO above its level ([`fifo_int`]): frames wait.
    pub const RSFL: Int = Int(1 << 3);
    /// RX status FIFO full: frames are being dropped.
    pub const RSFF: Int = Int(1 << 4);
    /// RX dropped-frame counter past half its range.
    pub const RXDF: Int = Int(1 << 6);
    /// TX status FIFO full: statuses are being lost.
    pub const TSFF: Int = Int(1 << 8);
    /// TX data FIFO overrun: a frame was written without room for it.
    pub const TDFO: Int = Int(1 << 10);
    /// Transmitter error.
    pub const TXE: Int = Int(1 << 13);
    /// Receiver error (e.g. a read past the end of a frame).
    pub const RXE: Int = Int(1 << 14);
    /// TX status FIFO overflow.
    pub const TXSO: Int = Int(1 << 16);
    /// Every bit.
    pub const ALL: Int = Int(u32::MAX);
    /// The bits that report a FIFO error, counted by the driver.
    pub const FIFO_ERRORS: Int = Int(Int::RSFF.0
        | Int::RXDF.0
        | Int::TSFF.0
        | Int::TDFO.0
        | Int::TXE.0
        | Int::RXE.0
        | Int::TXSO.0);

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Int) -> bool {
        self.0 & other.0 != 0
    }

    /// The bits set in both.
    pub const fn and(self, other: Int) -> Int {
        Int(self.0 & other.0)
    }
}

/// One entry of the RX status FIFO: a received frame's length and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RxStatus(pub u32);

impl RxStatus {
    const LENGTH_SHIFT: u32 = 16;
    const LENGTH_MASK: u32 = 0x3fff;
    const ERROR: u32 = 1 << 15;

    /// Bytes of the frame in the data FIFO, its 4-byte FCS included.
    pub const fn len(self) -> usize {
        ((self.0 >> Self::LENGTH_SHIFT) & Self::LENGTH_MASK) as usize
    }

    /// Whether the frame has no byte at all.
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Whether the MAC flagged the frame (CRC, length, runt, too long, …).
    pub const fn is_error(self) -> bool {
        self.0 & Self::ERROR != 0
    }

    /// Words the frame takes in the RX data FIFO (with the default
    /// `RX_CFG`: no offset, 4-byte end alignment).
    pub const fn words(self) -> usize {
        self.len().div_ceil(4)
    }
}

/// One entry of the TX status FIFO: how a frame's transmission went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TxStatus(pub u32);

impl TxStatus {
    const ERROR: u32 = 1 << 15;

    /// The tag given in the frame's [`TxCommand`].
    pub const fn tag(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// Whether the transmission failed (carrier lost, collisions, …).
    pub const fn is_error(self) -> bool {
        self.0 & Self::ERROR != 0
    }
}

/// [`Reg::RxFifoInf`]: what waits in the RX FIFOs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RxFifoInf(pub u32);

impl RxFifoInf {
    /// Statuses (so frames) waiting.
    pub const fn statuses(self) -> usize {
        ((self.0 >> 16) & 0xff) as usize
    }

    /// Bytes waiting in the data FIFO.
    pub const fn data_bytes(self) -> usize {
        (self.0 & 0xffff) as usize
    }
}

/// [`Reg::TxFifoInf`]: room in the TX data FIFO, statuses waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TxFifoInf(pub u32);

impl TxFifoInf {
    /// Statuses waiting. The datasheet gives this field 8 bits (the
    /// chip's FIFO holds fewer entries); QEMU's model counts up to 512 in
    /// the same place, so the reserved bits above are read too.
    pub const fn statuses(self) -> usize {
        ((self.0 >> 16) & 0xffff) as usize
    }

    /// Bytes free in the TX data FIFO.
    pub const fn free_bytes(self) -> usize {
        (self.0 & 0xffff) as usize
    }
}

/// The two command words that start a frame in the TX data FIFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TxCommand {
    /// Command A: this buffer's flags and length.
    pub a: u32,
    /// Command B: the frame's tag and length.
    pub b: u32,
}

impl TxCommand {
    /// Command A: the buffer is the frame's first segment.
    pub const FIRST_SEGMENT: u32 = 1 << 13;
    /// Command A: the buffer is the frame's last segment.
    pub const LAST_SEGMENT: u32 = 1 << 12;
    /// Largest buffer and frame length the commands can carry (11 bits).
    pub const MAX_LEN: usize = 0x7ff;

    /// A frame of `len` bytes (at most [`MAX_LEN`](Self::MAX_LEN)) in one
    /// buffer, word-aligned at both ends, tagged `tag`.
    pub const fn single(len: usize, tag: u16) -> TxCommand {
        let len = (len & Self::MAX_LEN) as u32;
        TxCommand {
            a: Self::FIRST_SEGMENT | Self::LAST_SEGMENT | len,
            b: ((tag as u32) << 16) | len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_decode_fields() {
        let status = RxStatus((64 << 16) | (1 << 15));
        assert_eq!(status.len(), 64);
        assert_eq!(status.words(), 16);
        assert!(status.is_error());
        assert_eq!(RxStatus(63 << 16).words(), 16);
        assert_eq!(TxStatus(0x1234_8000).tag(), 0x1234);
        assert!(TxStatus(0x1234_8000).is_error());
        assert_eq!(RxFifoInf(0x0003_05f0).statuses(), 3);
        assert_eq!(RxFifoInf(0x0003_05f0).data_bytes(), 0x5f0);
        assert_eq!(TxFifoInf(0x0200_1200).statuses(), 0x200);
        assert_eq!(TxFifoInf(0x0200_1200).free_bytes(), 0x1200);
        assert_eq!(ChipId(0x0118_0001).id(), 0x0118);
        assert!(ChipId(0x0118_0001).is_supported());
        assert!(!ChipId(0x1234_0001).is_supported());
    }

    #[test]
    fn tx_command_is_one_segment() {
        let cmd = TxCommand::single(1514, 7);
        assert_eq!(cmd.a, (1 << 13) | (1 << 12) | 1514);
        assert_eq!(cmd.b, (7 << 16) | 1514);
    }
}
