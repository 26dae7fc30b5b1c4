//! The threads a shell runs on.
//!
//! A shell's machine is megabytes (a fixed table with a queue per slot),
//! boxed once at start-up. An unoptimised build may build it on the stack
//! before moving it into the box, more than once; so a thread that builds
//! one gets a stack with room for that. Untouched stack pages cost nothing.

use std::io;
use std::thread::{Builder, Scope, ScopedJoinHandle};

use anyhow::Context;

/// Runs `serve` on a thread named `name` with room on its stack for a few
/// values of type `M`, and returns what it returns (a panic in it goes on
/// unwinding here).
pub fn with_stack_for<M, R: Send>(
    name: &str,
    serve: impl FnOnce() -> anyhow::Result<R> + Send,
) -> anyhow::Result<R> {
    std::thread::scope(|scope| {
        spawn_with_stack_for::<M, _>(scope, name, serve)
            .with_context(|| format!("starting the {name} thread"))?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Starts `run` on a thread of `scope` named `name`, with room on its stack
/// for a few values of type `M`.
pub fn spawn_with_stack_for<'scope, M, R: Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    name: &str,
    run: impl FnOnce() -> R + Send + 'scope,
) -> io::Result<ScopedJoinHandle<'scope, R>> {
    Builder::new()
        .name(name.to_owned())
        .stack_size(4 * size_of::<M>() + (8 << 20))
        .spawn_scoped(scope, run)
}
