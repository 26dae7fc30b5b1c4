//! CPU time of a process from `/proc/PID/stat`.

use anyhow::{Context, Result, bail};

/// User + system CPU time consumed so far by process `pid` (all its
/// threads), in seconds. `pid` may also be `"self"`.
pub fn cpu_seconds(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_second()?)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in ticks.
fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) is in parentheses and may contain spaces,
    // so the fields are counted from after its closing parenthesis.
    let Some(close) = stat.rfind(')') else {
        bail!("no ')' in stat line");
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("stat line too short");
    };
    Ok(utime.parse::<u64>()? + stime.parse::<u64>()?)
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the times in `/proc/PID/stat`.
fn clock_ticks_per_second() -> Result<f64> {
    // SAFETY: sysconf has no preconditions; it only reads a configuration
    // value and returns -1 on error, which is checked below.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    Ok(ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_after_a_name_with_spaces() {
        let line = "123 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(line).ok(), Some(290));
    }

    #[test]
    fn reads_own_cpu_time() {
        assert!(cpu_seconds("self").is_ok_and(|s| s >= 0.0));
    }
}
