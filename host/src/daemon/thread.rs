//! The thread a shell runs on.
//!
//! A shell's machine is megabytes (a fixed table with a queue per slot),
//! boxed once at start-up. An unoptimised build may build it on the stack
//! before moving it into the box, more than once; so a shell runs on a
//! thread whose stack has room for that. Untouched stack pages cost nothing.

use anyhow::Context;

/// Runs `serve` on a thread named `name` with room on its stack for a few
/// values of type `M`, and returns what it returns (a panic in it goes on
/// unwinding here).
pub fn with_stack_for<M, R: Send>(
    name: &str,
    serve: impl FnOnce() -> anyhow::Result<R> + Send,
) -> anyhow::Result<R> {
    let stack = 4 * size_of::<M>() + (8 << 20);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(name.to_owned())
            .stack_size(stack)
            .spawn_scoped(scope, serve)
            .with_context(|| format!("starting the {name} thread"))?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
