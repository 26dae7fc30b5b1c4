//! The board: QEMU's `mps2-an385` (ARM's AN385 image for the MPS2, a
//! Cortex-M3 at 25 MHz) and what the server needs of it — the LAN9118 as
//! a smoltcp device, a clock, and a way to sleep until the network or a
//! deadline wakes it.
//!
//! Sleeping is `wfi` with two wake-up sources: the LAN9118's interrupt
//! (IRQ 13, raised when a received frame waits) and SysTick, set as a
//! one-shot alarm for the server's next deadline. Time comes from the
//! LAN9118's free-running 25 MHz counter. An idle firmware wakes once per
//! [`MAX_SLEEP`] (to keep that counter's wraps counted) and otherwise only
//! when a frame arrives or a TCP timer is due.

use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m::asm;
use cortex_m::interrupt::{self, InterruptNumber};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{NVIC, SYST};
use cortex_m_rt::{ExceptionFrame, exception};
use lan9118::{Device, FRAME_LEN, Int, Lan9118, Mmio};
use selecho_core::{Duration, Instant};
use static_cell::ConstStaticCell;

use crate::clock::Clock;
use crate::server::Board;

/// Where the LAN9118's registers are (AN385 memory map).
const LAN9118_BASE: usize = 0x4020_0000;

/// The LAN9118's `FREE_RUN` counter ticks per microsecond.
const FREE_RUN_TICKS_PER_US: u32 = 25;

/// The longest sleep: SysTick's 24-bit counter on the 1 MHz reference clock.
pub const MAX_SLEEP: Duration = Duration::from_micros(0xff_ffff);

/// Words looked at each turn below the deepest stack use known: deeper use
/// that starts within this window is found (and then the whole stack is
/// scanned again).
const STACK_WINDOW: usize = 64;

/// Stack growth worth a log line, in bytes.
const STACK_REPORT_STEP: usize = 256;

/// A locally administered MAC address, for a chip without one in EEPROM.
const FALLBACK_MAC: [u8; 6] = [0x02, 0x73, 0x65, 0x6c, 0x65, 0x63];

/// The board's interrupts the firmware uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Irq {
    /// The LAN9118.
    Ethernet = 13,
}

// SAFETY: the numbers are the AN385's interrupt lines (hw/arm/mps2.c).
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self as u16
    }
}

/// Set by the interrupt handlers, cleared at the start of each turn: an
/// interrupt since then means there may be work, so do not sleep.
static WOKEN: AtomicBool = AtomicBool::new(false);

/// The frame buffers the device receives into and builds frames in.
static FRAMES: ConstStaticCell<[[u8; FRAME_LEN]; 2]> = ConstStaticCell::new([[0; FRAME_LEN]; 2]);

/// Why the board could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum BoardError {
    /// [`Mps2::take`] was called before.
    Taken,
    /// The LAN9118 did not come up.
    Ethernet(lan9118::Error),
}

/// The board, brought up: the LAN9118 as a smoltcp device, the clock, SysTick.
pub struct Mps2 {
    device: Device<'static, Mmio>,
    clock: Clock,
    syst: SYST,
    /// The driver's error count at the last turn, to log changes.
    errors: u32,
    stack: StackMark,
}

impl Mps2 {
    /// Brings the board up once: resets the LAN9118 (keeping the MAC
    /// address it loaded, or `FALLBACK_MAC` if none), enables its
    /// receive interrupt, starts the clock.
    pub fn take() -> Result<Mps2, BoardError> {
        let core = cortex_m::Peripherals::take().ok_or(BoardError::Taken)?;
        let [rx, tx] = FRAMES.try_take().ok_or(BoardError::Taken)?;
        // SAFETY: the AN385 maps a LAN9118 at LAN9118_BASE, and only this
        // driver touches it: `Peripherals::take` succeeded, so this runs once.
        let mut chip = Lan9118::new(unsafe { Mmio::new(LAN9118_BASE) });
        chip.init(None).map_err(BoardError::Ethernet)?;
        let mac = chip.mac_address().map_err(BoardError::Ethernet)?;
        if mac == [0; 6] || mac[0] & 1 != 0 {
            chip.set_mac_address(FALLBACK_MAC)
                .map_err(BoardError::Ethernet)?;
        }
        chip.enable_interrupts(Int::RSFL);
        let clock = Clock::new(chip.free_run(), FREE_RUN_TICKS_PER_US);
        let mut syst = core.SYST;
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::External);
        syst.enable_interrupt();
        Ok(Mps2 {
            device: Device::new(chip, rx, tx),
            clock,
            syst,
            errors: 0,
            stack: StackMark::new(),
        })
    }

    /// The LAN9118's MAC address.
    pub fn mac_address(&mut self) -> Result<[u8; 6], lan9118::Error> {
        self.device.chip().mac_address()
    }

    /// A seed for smoltcp (initial sequence numbers, ports): the 25 MHz
    /// counter at start-up, which differs from boot to boot with the time
    /// the host took to start QEMU. A board with a hardware random number
    /// generator should use that instead.
    pub fn seed(&mut self) -> u64 {
        let t = u64::from(self.device.chip().free_run());
        (t << 32 | t) ^ 0x9e37_79b9_7f4a_7c15
    }

    /// The most stack used so far, in bytes, and the stack's size.
    pub fn stack_used(&self) -> (usize, usize) {
        (self.stack.used(), self.stack.size())
    }

    /// The time now.
    pub fn now(&mut self) -> Instant {
        let raw = self.device.chip().free_run();
        self.clock.now(raw)
    }
}

impl Board for Mps2 {
    type Device = Device<'static, Mmio>;

    fn device(&mut self) -> &mut Self::Device {
        &mut self.device
    }

    fn begin_turn(&mut self) -> Instant {
        WOKEN.store(false, Ordering::Relaxed);
        // Clear the chip's interrupt status (its line falls), then forget
        // a wake-up this turn handles anyway: the line rose while masked.
        // A frame that comes after the clear raises the line again, and the
        // NVIC keeps a raised line pending: no wake-up is lost.
        let chip = self.device.chip();
        chip.service();
        NVIC::unpend(Irq::Ethernet);
        let stats = *chip.stats();
        if stats.errors() != self.errors {
            self.errors = stats.errors();
            defmt::warn!("lan9118: {}", stats);
        }
        self.stack.check();
        self.now()
    }

    fn sleep(&mut self, timeout: Option<Duration>) {
        let micros = timeout
            .map_or(MAX_SLEEP, |t| t.min(MAX_SLEEP))
            .total_micros();
        // Cannot truncate: at most MAX_SLEEP, 24 bits.
        let reload = micros.max(1) as u32;
        // With interrupts masked, an interrupt that comes after the check
        // stays pending and makes `wfi` return at once: none is lost.
        interrupt::free(|_| {
            if WOKEN.load(Ordering::Relaxed) {
                return;
            }
            self.syst.disable_counter();
            self.syst.set_reload(reload);
            self.syst.clear_current();
            self.syst.enable_counter();
            // SAFETY: no critical section relies on this line being masked;
            // its handler only masks it again and sets an atomic flag.
            unsafe { NVIC::unmask(Irq::Ethernet) };
            asm::wfi();
        });
    }
}

/// How deep the stack has been: cortex-m-rt paints it at start-up, and
/// whatever the program wrote no longer holds the paint.
struct StackMark {
    /// The lowest address of a word found written (the stack grows down).
    deepest: usize,
    /// The use last logged, in bytes.
    reported: usize,
}

impl StackMark {
    fn new() -> StackMark {
        let mut mark = StackMark {
            deepest: stack_start(),
            reported: 0,
        };
        mark.deepest = mark.scan();
        mark
    }

    fn size(&self) -> usize {
        stack_start() - stack_end()
    }

    fn used(&self) -> usize {
        stack_start() - self.deepest
    }

    /// Looks just below the deepest use known; if the stack went deeper,
    /// finds how deep, and logs it when it grew by a report step.
    fn check(&mut self) {
        let floor = self
            .deepest
            .saturating_sub(4 * STACK_WINDOW)
            .max(stack_end());
        if (floor..self.deepest).step_by(4).all(painted) {
            return;
        }
        self.deepest = self.scan();
        let used = self.used();
        if used >= self.reported + STACK_REPORT_STEP {
            self.reported = used;
            defmt::info!("stack: {} of {} bytes used so far", used, self.size());
        }
    }

    /// The lowest stack address written so far.
    fn scan(&self) -> usize {
        (stack_end()..stack_start())
            .step_by(4)
            .find(|&addr| !painted(addr))
            .unwrap_or(stack_start())
    }
}

/// The stack's top (it grows down from here), from the linker script.
fn stack_start() -> usize {
    // Only the symbol's address is taken, never its contents.
    &raw const _stack_start as usize
}

/// The stack's bottom, from `memory.x`.
fn stack_end() -> usize {
    &raw const _stack_end as usize
}

/// Whether the stack word at `addr` still holds the start-up paint.
fn painted(addr: usize) -> bool {
    // SAFETY: `addr` is a word-aligned address in [_stack_end, _stack_start),
    // RAM the stack owns; reading it races with nothing (single core, and
    // the words below the stack pointer belong to no live frame).
    unsafe { (addr as *const u32).read_volatile() == cortex_m_rt::STACK_PAINT_VALUE }
}

unsafe extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

/// The alarm went off: stop it (it is one-shot) and wake the main loop.
#[exception]
fn SysTick() {
    // SAFETY: a single read-modify-write of SysTick's control register,
    // which the main loop only writes with interrupts masked.
    unsafe { (*SYST::PTR).csr.modify(|csr| csr & !1) };
    WOKEN.store(true, Ordering::Relaxed);
}

/// The LAN9118's line stays high while a frame waits: mask it until the
/// main loop has read the frames and sleeps again (see [`Mps2::sleep`]).
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == Irq::Ethernet as i16 {
        NVIC::mask(Irq::Ethernet);
        WOKEN.store(true, Ordering::Relaxed);
        return;
    }
    defmt::error!("unexpected exception or interrupt {}", irqn);
    semihosting::process::exit(1);
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!("hard fault at pc {=u32:#010x}", frame.pc());
    semihosting::process::exit(1);
}
