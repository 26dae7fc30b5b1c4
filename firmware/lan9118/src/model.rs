//! A model of the chip as the datasheet (and QEMU) describe it, for the
//! driver's tests: FIFOs, the MAC and PHY register windows, a soft reset.

extern crate std;

use std::collections::VecDeque;
use std::vec::Vec;

use crate::bus::Registers;
use crate::regs::{
    BYTE_TEST, MacReg, PhyReg, Reg, TxCommand, hw_cfg, mac_csr_cmd, mii_acc, pmt_ctrl,
};

/// The chip's side of every register.
pub struct Model {
    pub byte_test: u32,
    pub id_rev: u32,
    /// Reads of `HW_CFG` that still show `SRST` after a reset; `u32::MAX`: stuck.
    pub reset_reads: u32,
    pub irq_cfg: u32,
    pub int_sts: u32,
    pub int_en: u32,
    pub fifo_int: u32,
    pub tx_cfg: u32,
    pub mac_csr_data: u32,
    pub mac: [u32; 16],
    pub phy: [u16; 32],
    pub rx_status: VecDeque<u32>,
    pub rx_data: VecDeque<u32>,
    /// Reads of the RX data port with nothing in the FIFO.
    pub rx_underruns: u32,
    pub rx_drop: u32,
    pub tx_free: u32,
    pub tx_status: VecDeque<u32>,
    /// Whether frames sent fail (their status has the error bit).
    pub tx_fails: bool,
    /// Frames sent, whole.
    pub sent: Vec<Vec<u8>>,
    /// Words of the frame being written: command A, B, then data.
    tx_words: Vec<u32>,
    pub free_run: u32,
}

impl Model {
    pub fn new() -> Model {
        Model {
            byte_test: BYTE_TEST,
            id_rev: 0x0118_0001,
            reset_reads: 2,
            irq_cfg: 0,
            int_sts: 0,
            int_en: 0,
            fifo_int: 0x4800_0000,
            tx_cfg: 0,
            mac_csr_data: 0,
            mac: [0; 16],
            phy: [0; 32],
            rx_status: VecDeque::new(),
            rx_data: VecDeque::new(),
            rx_underruns: 0,
            rx_drop: 0,
            tx_free: 4608,
            tx_status: VecDeque::new(),
            tx_fails: false,
            sent: Vec::new(),
            tx_words: Vec::new(),
            free_run: 0,
        }
    }

    /// A frame arrives off the wire: its words and a made-up FCS in the
    /// data FIFO, its status (length with the FCS) in the status FIFO.
    pub fn deliver(&mut self, frame: &[u8], error: bool) {
        let mut bytes = frame.to_vec();
        bytes.extend_from_slice(&[0xfc; 4]);
        for chunk in bytes.chunks(4) {
            let mut word = [0; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self.rx_data.push_back(u32::from_le_bytes(word));
        }
        let status = ((bytes.len() as u32) << 16) | if error { 1 << 15 } else { 0 };
        self.rx_status.push_back(status);
        self.int_sts |= 1 << 3;
    }

    fn mac_access(&mut self, command: u32) {
        let index = (command & mac_csr_cmd::INDEX_MASK) as usize;
        if command & mac_csr_cmd::READ != 0 {
            self.mac_csr_data = self.mac[index];
            return;
        }
        self.mac[index] = self.mac_csr_data;
        if index == MacReg::MiiAcc as usize {
            let phy_reg = ((self.mac_csr_data >> mii_acc::INDEX_SHIFT) & 0x1f) as usize;
            if self.mac_csr_data & mii_acc::WRITE != 0 {
                self.phy[phy_reg] = self.mac[MacReg::MiiData as usize] as u16;
            } else {
                self.mac[MacReg::MiiData as usize] = u32::from(self.phy[phy_reg]);
            }
            // Done at once.
            self.mac[index] &= !mii_acc::BUSY;
        }
    }

    fn tx_push(&mut self, word: u32) {
        self.tx_words.push(word);
        let [a, b, data @ ..] = self.tx_words.as_slice() else {
            return;
        };
        assert_eq!(a & TxCommand::MAX_LEN as u32, b & TxCommand::MAX_LEN as u32);
        let len = (b & TxCommand::MAX_LEN as u32) as usize;
        if data.len() < len.div_ceil(4) {
            return;
        }
        let mut frame: Vec<u8> = data.iter().flat_map(|w| w.to_le_bytes()).collect();
        frame.truncate(len);
        self.sent.push(frame);
        let error = if self.tx_fails { 1 << 15 } else { 0 };
        self.tx_status.push_back((b & 0xffff_0000) | error);
        self.tx_words.clear();
    }
}

impl Registers for Model {
    fn read(&mut self, reg: Reg) -> u32 {
        match reg {
            Reg::RxData => self.rx_data.pop_front().unwrap_or_else(|| {
                self.rx_underruns += 1;
                0
            }),
            Reg::RxStatus => self.rx_status.pop_front().unwrap_or(0),
            Reg::TxStatus => self.tx_status.pop_front().unwrap_or(0),
            Reg::IdRev => self.id_rev,
            Reg::IrqCfg => self.irq_cfg,
            Reg::IntSts => self.int_sts,
            Reg::IntEn => self.int_en,
            Reg::ByteTest => self.byte_test,
            Reg::FifoInt => self.fifo_int,
            Reg::TxCfg => self.tx_cfg,
            Reg::HwCfg => {
                if self.reset_reads > 0 {
                    self.reset_reads = self.reset_reads.saturating_sub(1);
                    hw_cfg::SRST
                } else {
                    0
                }
            }
            Reg::RxFifoInf => {
                ((self.rx_status.len() as u32) << 16) | (self.rx_data.len() as u32 * 4)
            }
            Reg::TxFifoInf => ((self.tx_status.len() as u32) << 16) | self.tx_free,
            Reg::PmtCtrl => pmt_ctrl::READY,
            Reg::FreeRun => self.free_run,
            Reg::RxDrop => core::mem::take(&mut self.rx_drop),
            Reg::MacCsrCmd => 0,
            Reg::MacCsrData => self.mac_csr_data,
            other => panic!("the driver reads {other:?}"),
        }
    }

    fn write(&mut self, reg: Reg, value: u32) {
        match reg {
            Reg::TxData => self.tx_push(value),
            Reg::IrqCfg => self.irq_cfg = value,
            Reg::IntSts => self.int_sts &= !value,
            Reg::IntEn => self.int_en = value,
            Reg::FifoInt => self.fifo_int = value,
            Reg::TxCfg => self.tx_cfg = value,
            Reg::HwCfg => {}
            Reg::MacCsrData => self.mac_csr_data = value,
            Reg::MacCsrCmd => {
                assert!(
                    value & mac_csr_cmd::BUSY != 0,
                    "a MAC access starts with BUSY"
                );
                self.mac_access(value);
            }
            other => panic!("the driver writes {other:?}"),
        }
    }
}

/// The PHY's basic status with the link up, for tests that want it.
pub const LINK_UP: u16 = crate::regs::phy_bsr::LINK_UP;

/// The PHY register index, for tests.
pub const fn phy(reg: PhyReg) -> usize {
    reg as usize
}
