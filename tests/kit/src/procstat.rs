//! CPU time of a process from `/proc/PID/stat`.

use std::io;
use std::time::Duration;

/// User + system CPU time consumed so far by process `pid` (all its
/// threads). `pid` may also be `"self"`.
pub fn cpu_time(pid: &str) -> io::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {path}"))
    })?;
    // SAFETY: sysconf has no preconditions; it only reads a configuration
    // value and returns -1 on error, which is checked below.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return Err(io::Error::other("sysconf(_SC_CLK_TCK) failed"));
    }
    Ok(Duration::from_micros(ticks * 1_000_000 / hz as u64))
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in ticks.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces,
    // so the fields are counted from after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_after_a_name_with_spaces() {
        let line = "123 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(line), Some(290));
        assert_eq!(parse_cpu_ticks("123 (x) S 1 2"), None);
    }

    #[test]
    fn reads_own_cpu_time() {
        assert!(cpu_time("self").is_ok());
    }
}
