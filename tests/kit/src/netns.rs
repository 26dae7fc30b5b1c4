//! A network namespace of a test's own, or a skip said out loud.
//!
//! [`enter_fresh`] moves the calling thread into a new, empty network
//! namespace (`unshare(CLONE_NEWNET)`) with loopback up: the servers it
//! spawns and the threads it starts from then on inherit it, so devices,
//! addresses and routes never touch the host's network, and the namespace
//! (with every device in it) vanishes by itself once the thread and its
//! children are gone — on success, on panic, or if the test binary is
//! killed. There is nothing to clean up.

use std::process::Command;

use crate::process::is_root;

/// Why tests that need a namespace and a TUN/TAP device cannot run here.
pub fn unsupported() -> Option<String> {
    if !is_root() {
        return Some("not root (these tests need CAP_NET_ADMIN)".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    None
}

/// Moves this thread into a new, empty network namespace with loopback up;
/// `Err` with the reason if it cannot.
pub fn enter_fresh() -> Result<(), String> {
    if let Some(reason) = unsupported() {
        return Err(reason);
    }
    // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET affects only the
    // calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    ip(&["link", "set", "lo", "up"]);
    Ok(())
}

/// Enters a fresh namespace, or says on stderr why the calling test skips
/// and returns `false`.
pub fn enter_or_skip() -> bool {
    match enter_fresh() {
        Ok(()) => true,
        Err(reason) => {
            crate::skip(&reason);
            false
        }
    }
}

/// Runs `test` in a fresh namespace, or skips it saying why.
pub fn test(test: impl FnOnce()) {
    if enter_or_skip() {
        test();
    }
}

/// Runs `ip ARGS` in this thread's namespace; panics if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
