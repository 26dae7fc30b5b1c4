//! One place that decides where the core's log lines go: feature `log` to the
//! `log` crate, feature `defmt` to `defmt`, neither to nowhere (the arguments
//! are still evaluated by reference, so no "unused" warnings depend on features).
//! Format strings use only `{}`, which both backends accept.

#[cfg(all(feature = "log", feature = "defmt"))]
compile_error!("selecho-core: enable at most one of the features `log` and `defmt`");

macro_rules! mux_log {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "log")]
        log::$level!($fmt $(, $arg)*);
        #[cfg(feature = "defmt")]
        defmt::$level!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        {
            $( let _ = &$arg; )*
        }
    }};
}

macro_rules! trace {
    ($($t:tt)*) => { mux_log!(trace, $($t)*) };
}

macro_rules! debug {
    ($($t:tt)*) => { mux_log!(debug, $($t)*) };
}

#[allow(unused_macros)]
macro_rules! info {
    ($($t:tt)*) => { mux_log!(info, $($t)*) };
}

#[allow(unused_macros)]
macro_rules! warn {
    ($($t:tt)*) => { mux_log!(warn, $($t)*) };
}
