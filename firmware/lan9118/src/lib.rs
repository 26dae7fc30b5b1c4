//! A `no_std` driver for the SMSC (Microchip) LAN9118 Ethernet controller
//! on a 32-bit bus, as a smoltcp [`phy::Device`](smoltcp::phy::Device).
//!
//! - [`regs`]: the register map, with typed views of the registers and
//!   FIFO entries the driver reads or writes.
//! - [`Registers`]: how the driver reaches them ([`Mmio`] on hardware, a
//!   model of the chip in this crate's tests).
//! - [`Lan9118`]: bring-up, frames in and out through the data FIFOs, the
//!   status FIFOs drained and the interrupt status cleared every turn
//!   ([`Lan9118::service`]), errors counted ([`Stats`]).
//! - [`Device`]: the smoltcp device, over two frame buffers it is lent.
//!
//! Nothing allocates, nothing blocks on the network; the only waits are
//! bounded ones for self-clearing bits at start-up and on PHY access.
//!
//! ```no_run
//! use lan9118::{Device, FRAME_LEN, Int, Lan9118, Mmio};
//!
//! # fn main() -> Result<(), lan9118::Error> {
//! static mut RX: [u8; FRAME_LEN] = [0; FRAME_LEN];
//! static mut TX: [u8; FRAME_LEN] = [0; FRAME_LEN];
//! // SAFETY: the board maps a LAN9118 at 0x4020_0000 and nothing else uses it.
//! let mut chip = Lan9118::new(unsafe { Mmio::new(0x4020_0000) });
//! chip.init(Some([0x02, 0, 0, 0, 0, 1]))?;
//! chip.enable_interrupts(Int::RSFL);
//! // SAFETY: this runs once, and nothing else touches the buffers.
//! let (rx, tx) = unsafe { (&mut *(&raw mut RX), &mut *(&raw mut TX)) };
//! let mut device = Device::new(chip, rx, tx);
//! // Each turn: device.chip().service(), then smoltcp's polls.
//! # Ok(())
//! # }
//! ```

#![no_std]
#![deny(missing_docs)]

mod bus;
mod chip;
mod device;
pub mod regs;

pub use bus::{Mmio, Registers};
pub use chip::{Error, Lan9118, Stats, TxError, Wait};
pub use device::{Device, FRAME_LEN, RxToken, TxToken};
pub use regs::{ChipId, Int};

#[cfg(test)]
mod model;
