//! How the driver reaches the chip's registers: through [`Registers`], so
//! the same driver runs on memory-mapped hardware ([`Mmio`]) and against a
//! model of the chip in tests.

use crate::regs::Reg;

/// 32-bit access to the controller's registers and FIFO ports.
///
/// Reads take `&mut self`: reading a FIFO port pops it.
pub trait Registers {
    /// Reads `reg`.
    fn read(&mut self, reg: Reg) -> u32;
    /// Writes `value` to `reg`.
    fn write(&mut self, reg: Reg, value: u32);
}

/// The controller mapped into the address space at a fixed base.
#[derive(Debug)]
pub struct Mmio {
    base: *mut u32,
}

impl Mmio {
    /// The controller whose registers start at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address of a LAN9118 (or compatible) register
    /// block mapped for 32-bit volatile access, and nothing else may access
    /// that block while this `Mmio` lives (it is the chip's only owner).
    pub const unsafe fn new(base: usize) -> Mmio {
        Mmio {
            base: base as *mut u32,
        }
    }
}

impl Registers for Mmio {
    fn read(&mut self, reg: Reg) -> u32 {
        // SAFETY: `new`'s contract: `base` maps the register block, which
        // spans every `Reg` offset, and we are its only user.
        unsafe { self.base.byte_add(reg.offset()).read_volatile() }
    }

    fn write(&mut self, reg: Reg, value: u32) {
        // SAFETY: as in `read`.
        unsafe { self.base.byte_add(reg.offset()).write_volatile(value) }
    }
}
