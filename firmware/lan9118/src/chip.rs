//! The controller: bring-up, frames in and out through the FIFOs, the
//! status FIFOs and interrupt status drained, errors counted.

use core::fmt;

use crate::bus::Registers;
use crate::regs::{
    BYTE_TEST, ChipId, Int, MacReg, PHY_ADDRESS, PhyReg, Reg, RxFifoInf, RxStatus, TxCommand,
    TxFifoInf, TxStatus, fifo_int, hw_cfg, irq_cfg, mac_cr, mac_csr_cmd, mii_acc, phy_bcr, phy_bsr,
    pmt_ctrl, tx_cfg,
};

/// How many times a self-clearing bit is read before giving up. The chip
/// clears them within microseconds (a soft reset within 10 ms at worst),
/// so this bounds start-up and PHY accesses, never a frame.
const WAIT_READS: u32 = 1_000_000;

/// The FCS the chip leaves at the end of every received frame.
const FCS_LEN: usize = 4;

/// The two command words before a frame's data in the TX data FIFO.
const TX_COMMAND_LEN: usize = 8;

/// What the driver has counted since it was made. Counters wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Frames received and handed over.
    pub rx_frames: u32,
    /// Frames written to the TX FIFO.
    pub tx_frames: u32,
    /// Frames lost on receive: dropped by the chip for want of FIFO room
    /// (its `RX_DROP` counter), or too long for the receive buffer.
    pub rx_dropped: u32,
    /// Frames the MAC received with an error (CRC, length, runt, …), dropped.
    pub rx_errors: u32,
    /// Frames whose transmission failed, from the TX status FIFO.
    pub tx_errors: u32,
    /// Times a frame could not be sent because the TX data FIFO was full.
    pub tx_fifo_full: u32,
    /// FIFO error events from the interrupt status (status FIFO full or
    /// overflowed, data FIFO overrun, receiver or transmitter error).
    pub fifo_errors: u32,
}

impl Stats {
    /// Every error counter summed (wrapping): changes whenever one does.
    pub const fn errors(&self) -> u32 {
        self.rx_dropped
            .wrapping_add(self.rx_errors)
            .wrapping_add(self.tx_errors)
            .wrapping_add(self.tx_fifo_full)
            .wrapping_add(self.fifo_errors)
    }
}

/// A self-clearing bit the driver waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Wait {
    /// `HW_CFG.SRST`, the soft reset.
    Reset,
    /// `PMT_CTRL.READY`, the device ready after reset.
    Ready,
    /// `MAC_CSR_CMD.BUSY`, a MAC register access.
    MacCsr,
    /// `MII_ACC.BUSY`, a PHY register access.
    Mii,
}

/// Why the controller could not be brought up or reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// `BYTE_TEST` read this instead of `0x87654321`: no controller at the
    /// address, or a bus wired for another width or byte order.
    NoChip(u32),
    /// A chip this driver does not know.
    Unsupported(ChipId),
    /// A self-clearing bit stayed set.
    Timeout(Wait),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoChip(read) => write!(f, "no LAN9118 (BYTE_TEST read {read:#010x})"),
            Error::Unsupported(id) => write!(f, "unsupported chip id {:#06x}", id.id()),
            Error::Timeout(what) => write!(f, "timed out waiting for {what:?}"),
        }
    }
}

impl core::error::Error for Error {}

/// Why a frame was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TxError {
    /// Longer than a TX command can carry.
    TooLong,
    /// No room in the TX data FIFO now; counted in [`Stats::tx_fifo_full`].
    FifoFull,
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TxError::TooLong => "frame too long",
            TxError::FifoFull => "TX FIFO full",
        })
    }
}

impl core::error::Error for TxError {}

/// A LAN9118 reached through `R`.
#[derive(Debug)]
pub struct Lan9118<R> {
    regs: R,
    stats: Stats,
    /// Tag of the next frame sent, echoed in its TX status.
    tag: u16,
}

impl<R: Registers> Lan9118<R> {
    /// The controller behind `regs`, not touched yet: call [`init`](Self::init).
    pub const fn new(regs: R) -> Self {
        Lan9118 {
            regs,
            stats: Stats {
                rx_frames: 0,
                tx_frames: 0,
                rx_dropped: 0,
                rx_errors: 0,
                tx_errors: 0,
                tx_fifo_full: 0,
                fifo_errors: 0,
            },
            tag: 0,
        }
    }

    /// Resets the chip and brings it up: interrupt pin push-pull and active
    /// high (no interrupt enabled yet), receiver (this MAC address and
    /// broadcasts, not promiscuous) and transmitter on, full duplex. With
    /// `mac`, sets the MAC address; else keeps the one the chip loaded
    /// from its EEPROM ([`mac_address`](Self::mac_address)).
    pub fn init(&mut self, mac: Option<[u8; 6]>) -> Result<ChipId, Error> {
        let test = self.regs.read(Reg::ByteTest);
        if test != BYTE_TEST {
            return Err(Error::NoChip(test));
        }
        self.regs.write(Reg::HwCfg, hw_cfg::SRST);
        self.wait(Reg::HwCfg, hw_cfg::SRST, false, Wait::Reset)?;
        self.wait(Reg::PmtCtrl, pmt_ctrl::READY, true, Wait::Ready)?;
        let id = ChipId(self.regs.read(Reg::IdRev));
        if !id.is_supported() {
            return Err(Error::Unsupported(id));
        }
        self.regs.write(Reg::IntEn, 0);
        self.regs.write(Reg::IntSts, Int::ALL.0);
        self.regs.write(
            Reg::IrqCfg,
            irq_cfg::IRQ_EN | irq_cfg::IRQ_POL | irq_cfg::IRQ_TYPE,
        );
        // RSFL as soon as one status waits.
        let levels = self.regs.read(Reg::FifoInt) & !fifo_int::RX_STATUS_LEVEL_MASK;
        self.regs.write(Reg::FifoInt, levels);
        if let Some(mac) = mac {
            self.set_mac_address(mac)?;
        }
        self.mac_write(MacReg::Cr, mac_cr::TXEN | mac_cr::RXEN | mac_cr::FDPX)?;
        self.regs.write(Reg::TxCfg, tx_cfg::TX_ON);
        Ok(id)
    }

    /// Enables exactly the interrupts in `which` (e.g. [`Int::RSFL`]: a frame waits).
    pub fn enable_interrupts(&mut self, which: Int) {
        self.regs.write(Reg::IntEn, which.0);
    }

    /// The MAC address the chip filters on and sends from.
    pub fn mac_address(&mut self) -> Result<[u8; 6], Error> {
        let low = self.mac_read(MacReg::AddrL)?.to_le_bytes();
        let high = self.mac_read(MacReg::AddrH)?.to_le_bytes();
        Ok([low[0], low[1], low[2], low[3], high[0], high[1]])
    }

    /// Sets the MAC address.
    pub fn set_mac_address(&mut self, mac: [u8; 6]) -> Result<(), Error> {
        self.mac_write(
            MacReg::AddrL,
            u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        )?;
        self.mac_write(MacReg::AddrH, u32::from_le_bytes([mac[4], mac[5], 0, 0]))
    }

    /// Whether the PHY reports the link up.
    pub fn link_up(&mut self) -> Result<bool, Error> {
        Ok(self.phy_read(PhyReg::BasicStatus)? & phy_bsr::LINK_UP != 0)
    }

    /// Loops frames sent back to the receiver inside the PHY (for tests).
    pub fn set_loopback(&mut self, on: bool) -> Result<(), Error> {
        let control = self.phy_read(PhyReg::BasicControl)?;
        let control = if on {
            control | phy_bcr::LOOPBACK
        } else {
            control & !phy_bcr::LOOPBACK
        };
        self.phy_write(PhyReg::BasicControl, control)
    }

    /// The free-running 25 MHz counter (wraps every 171.8 s).
    pub fn free_run(&mut self) -> u32 {
        self.regs.read(Reg::FreeRun)
    }

    /// What the driver has counted so far.
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Once per turn of the main loop: clears the interrupt status (and
    /// returns it), counting FIFO errors; drains the TX status FIFO,
    /// counting failed transmissions; adds the chip's dropped-frame count.
    /// Clear the status before reading frames: a frame that arrives after
    /// this call raises its interrupt again.
    pub fn service(&mut self) -> Int {
        let status = Int(self.regs.read(Reg::IntSts));
        self.regs.write(Reg::IntSts, status.0);
        let errors = status.and(Int::FIFO_ERRORS).0.count_ones();
        self.stats.fifo_errors = self.stats.fifo_errors.wrapping_add(errors);
        let waiting = TxFifoInf(self.regs.read(Reg::TxFifoInf)).statuses();
        for _ in 0..waiting {
            if TxStatus(self.regs.read(Reg::TxStatus)).is_error() {
                self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
            }
        }
        let dropped = self.regs.read(Reg::RxDrop);
        self.stats.rx_dropped = self.stats.rx_dropped.wrapping_add(dropped);
        status
    }

    /// Reads the next good frame into `buf` and returns its length (FCS
    /// left out), or `None` if no frame waits. Frames with errors, or
    /// longer than `buf`, are read out of the FIFO, counted and skipped.
    pub fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let waiting = RxFifoInf(self.regs.read(Reg::RxFifoInf)).statuses();
        for _ in 0..waiting {
            let status = RxStatus(self.regs.read(Reg::RxStatus));
            let words = status.words();
            // A status shorter than the FCS is as bad as one with an error.
            let len = status.len().checked_sub(FCS_LEN);
            let Some(len) = len.filter(|_| !status.is_error()) else {
                self.skip(words, Skip::Error);
                continue;
            };
            let Some(frame) = buf.get_mut(..len) else {
                self.skip(words, Skip::TooLong);
                continue;
            };
            // The frame's words, then the FCS's (dropped).
            let mut chunks = frame.chunks_mut(4);
            for _ in 0..words {
                let word = self.regs.read(Reg::RxData).to_le_bytes();
                if let Some(chunk) = chunks.next() {
                    chunk.copy_from_slice(&word[..chunk.len()]);
                }
            }
            self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
            return Some(len);
        }
        None
    }

    /// Whether the TX data FIFO has room for a frame of `len` bytes now.
    pub fn tx_room(&mut self, len: usize) -> bool {
        let free = TxFifoInf(self.regs.read(Reg::TxFifoInf)).free_bytes();
        free >= len.next_multiple_of(4) + TX_COMMAND_LEN
    }

    /// Sends `frame` (destination MAC first, no FCS: the chip adds it).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), TxError> {
        if frame.len() > TxCommand::MAX_LEN {
            return Err(TxError::TooLong);
        }
        if !self.tx_room(frame.len()) {
            self.stats.tx_fifo_full = self.stats.tx_fifo_full.wrapping_add(1);
            return Err(TxError::FifoFull);
        }
        let command = TxCommand::single(frame.len(), self.tag);
        self.tag = self.tag.wrapping_add(1);
        self.regs.write(Reg::TxData, command.a);
        self.regs.write(Reg::TxData, command.b);
        for chunk in frame.chunks(4) {
            let mut word = [0; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self.regs.write(Reg::TxData, u32::from_le_bytes(word));
        }
        self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
        Ok(())
    }

    /// The register model under the driver, for the device's tests.
    #[cfg(test)]
    pub(crate) fn regs_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Pops `words` words of a frame that is not wanted, and counts it.
    /// (The chip's fast-forward would be quicker for long frames, but
    /// QEMU's model of it leaves the FIFO inconsistent.)
    fn skip(&mut self, words: usize, why: Skip) {
        for _ in 0..words {
            self.regs.read(Reg::RxData);
        }
        let counter = match why {
            Skip::Error => &mut self.stats.rx_errors,
            Skip::TooLong => &mut self.stats.rx_dropped,
        };
        *counter = counter.wrapping_add(1);
    }

    fn mac_read(&mut self, reg: MacReg) -> Result<u32, Error> {
        self.mac_command(mac_csr_cmd::READ | reg as u32)?;
        Ok(self.regs.read(Reg::MacCsrData))
    }

    fn mac_write(&mut self, reg: MacReg, value: u32) -> Result<(), Error> {
        self.regs.write(Reg::MacCsrData, value);
        self.mac_command(reg as u32)
    }

    /// Runs one MAC register access and waits for it to finish.
    fn mac_command(&mut self, command: u32) -> Result<(), Error> {
        self.wait(Reg::MacCsrCmd, mac_csr_cmd::BUSY, false, Wait::MacCsr)?;
        self.regs.write(
            Reg::MacCsrCmd,
            mac_csr_cmd::BUSY | (command & (mac_csr_cmd::READ | mac_csr_cmd::INDEX_MASK)),
        );
        self.wait(Reg::MacCsrCmd, mac_csr_cmd::BUSY, false, Wait::MacCsr)?;
        Ok(())
    }

    fn phy_read(&mut self, reg: PhyReg) -> Result<u16, Error> {
        self.mii_command(reg, 0)?;
        // The data register holds 16 bits.
        Ok(self.mac_read(MacReg::MiiData)? as u16)
    }

    fn phy_write(&mut self, reg: PhyReg, value: u16) -> Result<(), Error> {
        self.mii_wait()?;
        self.mac_write(MacReg::MiiData, u32::from(value))?;
        self.mii_command(reg, mii_acc::WRITE)
    }

    /// Runs one PHY register access and waits for it to finish.
    fn mii_command(&mut self, reg: PhyReg, write: u32) -> Result<(), Error> {
        self.mii_wait()?;
        let command = (PHY_ADDRESS << mii_acc::PHY_SHIFT)
            | ((reg as u32) << mii_acc::INDEX_SHIFT)
            | write
            | mii_acc::BUSY;
        self.mac_write(MacReg::MiiAcc, command)?;
        self.mii_wait()
    }

    /// Waits until no PHY access is under way.
    fn mii_wait(&mut self) -> Result<(), Error> {
        for _ in 0..WAIT_READS {
            if self.mac_read(MacReg::MiiAcc)? & mii_acc::BUSY == 0 {
                return Ok(());
            }
        }
        Err(Error::Timeout(Wait::Mii))
    }

    /// Reads `reg` until the bits of `mask` are all set (`set`) or all
    /// clear, at most [`WAIT_READS`] times.
    fn wait(&mut self, reg: Reg, mask: u32, set: bool, what: Wait) -> Result<(), Error> {
        let want = if set { mask } else { 0 };
        for _ in 0..WAIT_READS {
            if self.regs.read(reg) & mask == want {
                return Ok(());
            }
        }
        Err(Error::Timeout(what))
    }
}

/// Why a received frame is skipped.
#[derive(Clone, Copy)]
enum Skip {
    Error,
    TooLong,
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;
    use crate::model::{LINK_UP, Model, phy};
    use crate::regs::phy_bcr;

    fn chip() -> Lan9118<Model> {
        let mut chip = Lan9118::new(Model::new());
        chip.init(Some([0x02, 1, 2, 3, 4, 5])).expect("init");
        chip
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn init_configures_the_chip() {
        let mut chip = chip();
        let model = &chip.regs;
        assert_eq!(
            model.irq_cfg,
            irq_cfg::IRQ_EN | irq_cfg::IRQ_POL | irq_cfg::IRQ_TYPE
        );
        assert_eq!(model.fifo_int & 0xff, 0, "RSFL at one status");
        assert_eq!(model.fifo_int & !0xff, 0x4800_0000, "other levels kept");
        assert_eq!(model.int_en, 0);
        let cr = model.mac[MacReg::Cr as usize];
        assert_eq!(cr, mac_cr::TXEN | mac_cr::RXEN | mac_cr::FDPX);
        assert_eq!(cr & (mac_cr::PRMS | mac_cr::BCAST), 0);
        assert_eq!(model.tx_cfg, tx_cfg::TX_ON);
        assert_eq!(chip.mac_address(), Ok([0x02, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn init_refuses_what_is_not_a_lan9118() {
        let mut model = Model::new();
        model.byte_test = 0x4321_8765;
        assert_eq!(
            Lan9118::new(model).init(None),
            Err(Error::NoChip(0x4321_8765))
        );
        let mut model = Model::new();
        model.id_rev = 0x1234_0000;
        assert_eq!(
            Lan9118::new(model).init(None),
            Err(Error::Unsupported(ChipId(0x1234_0000)))
        );
        let mut model = Model::new();
        model.reset_reads = u32::MAX;
        assert_eq!(
            Lan9118::new(model).init(None),
            Err(Error::Timeout(Wait::Reset))
        );
    }

    #[test]
    fn frames_of_every_length_come_in_without_their_fcs() {
        let mut chip = chip();
        let mut buf = [0; 1514];
        for len in [14, 41, 42, 43, 60, 61, 62, 63, 64, 1513, 1514] {
            let sent = frame(len, len as u8);
            chip.regs.deliver(&sent, false);
            assert_eq!(chip.recv(&mut buf), Some(len));
            assert_eq!(&buf[..len], &sent[..]);
            assert!(chip.regs.rx_data.is_empty(), "the FCS words were read too");
        }
        assert_eq!(chip.recv(&mut buf), None);
        assert_eq!(chip.stats().rx_frames, 11);
        assert_eq!(chip.regs.rx_underruns, 0);
    }

    #[test]
    fn bad_and_oversized_frames_are_skipped_and_counted() {
        let mut chip = chip();
        let mut buf = [0; 100];
        chip.regs.deliver(&frame(80, 1), true);
        chip.regs.deliver(&frame(101, 2), false);
        chip.regs.deliver(&frame(100, 3), false);
        assert_eq!(chip.recv(&mut buf), Some(100));
        assert_eq!(&buf[..], &frame(100, 3)[..]);
        assert!(chip.regs.rx_data.is_empty());
        let stats = *chip.stats();
        assert_eq!(
            (stats.rx_errors, stats.rx_dropped, stats.rx_frames),
            (1, 1, 1)
        );
        assert_eq!(chip.regs.rx_underruns, 0);
    }

    #[test]
    fn a_status_shorter_than_the_fcs_is_an_error_not_a_panic() {
        let mut chip = chip();
        chip.regs.rx_status.push_back(2 << 16);
        chip.regs.rx_data.push_back(0);
        assert_eq!(chip.recv(&mut [0; 64]), None);
        assert_eq!(chip.stats().rx_errors, 1);
        assert!(chip.regs.rx_data.is_empty());
    }

    #[test]
    fn frames_go_out_whole_with_one_command() {
        let mut chip = chip();
        for len in [42, 60, 61, 63, 1514] {
            chip.send(&frame(len, 9)).expect("send");
        }
        let sent = &chip.regs.sent;
        assert_eq!(sent.len(), 5);
        for (got, len) in sent.iter().zip([42, 60, 61, 63, 1514]) {
            assert_eq!(got, &frame(len, 9));
        }
        assert_eq!(chip.stats().tx_frames, 5);
        assert_eq!(chip.send(&[0; 2048]), Err(TxError::TooLong));
    }

    #[test]
    fn a_full_fifo_refuses_the_frame_and_counts_it() {
        let mut chip = chip();
        chip.regs.tx_free = 60 + 8 - 1;
        assert!(!chip.tx_room(60));
        assert_eq!(chip.send(&frame(60, 0)), Err(TxError::FifoFull));
        assert!(chip.regs.sent.is_empty());
        chip.regs.tx_free = 60 + 8;
        assert_eq!(chip.send(&frame(60, 0)), Ok(()));
        assert_eq!(chip.stats().tx_fifo_full, 1);
    }

    #[test]
    fn service_drains_status_and_counts_errors() {
        let mut chip = chip();
        chip.send(&frame(60, 0)).expect("send");
        chip.regs.tx_fails = true;
        chip.send(&frame(60, 0)).expect("send");
        chip.regs.rx_drop = 3;
        chip.regs.int_sts = Int::RSFL.0 | Int::TDFO.0 | Int::RXE.0;
        let status = chip.service();
        assert_eq!(status, Int(Int::RSFL.0 | Int::TDFO.0 | Int::RXE.0));
        assert_eq!(chip.regs.int_sts, 0, "cleared");
        assert!(chip.regs.tx_status.is_empty(), "drained");
        let stats = *chip.stats();
        assert_eq!(
            (stats.tx_errors, stats.rx_dropped, stats.fifo_errors),
            (1, 3, 2)
        );
        assert_eq!(stats.errors(), 6);
        // Read-clear: nothing more the next time.
        chip.service();
        assert_eq!(chip.stats().errors(), 6);
    }

    #[test]
    fn phy_registers_go_through_the_mii_window() {
        let mut chip = chip();
        chip.regs.phy[phy(PhyReg::BasicStatus)] = LINK_UP;
        assert_eq!(chip.link_up(), Ok(true));
        chip.regs.phy[phy(PhyReg::BasicControl)] = phy_bcr::AUTONEG;
        chip.set_loopback(true).expect("loopback on");
        assert_eq!(
            chip.regs.phy[phy(PhyReg::BasicControl)],
            phy_bcr::AUTONEG | phy_bcr::LOOPBACK
        );
        chip.set_loopback(false).expect("loopback off");
        assert_eq!(chip.regs.phy[phy(PhyReg::BasicControl)], phy_bcr::AUTONEG);
    }
}
