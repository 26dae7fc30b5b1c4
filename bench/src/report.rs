//! Summaries of repeated runs, rendered as a Markdown table and an SVG
//! grouped bar chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::result::{LoadResult, median};

/// The servers every TCP row is compared against, each in a ratio column
/// of its own when it ran: the canonical tokio server, and the bare epoll
/// loop (the limit a readiness loop can reach).
pub const BASELINES: &[&str] = &["tokio-mt", "epoll"];
/// The server every UDP row is compared against.
pub const UDP_BASELINES: &[&str] = &["tokio-udp"];

/// Medians over the rounds of one (load, server) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Load name, e.g. `pingpong 100x64`.
    pub load: String,
    /// Server name.
    pub server: String,
    /// Rounds that produced a result.
    pub rounds: usize,
    /// Median messages per second.
    pub msgs_per_sec: Option<f64>,
    /// Median echoed Mbit/s.
    pub mbit_s: Option<f64>,
    /// Median p50 latency, µs.
    pub p50_us: Option<f64>,
    /// Median p99 latency, µs.
    pub p99_us: Option<f64>,
    /// Median p999 latency, µs.
    pub p999_us: Option<f64>,
    /// Median server CPU µs per message.
    pub cpu_us_per_msg: Option<f64>,
    /// Errors summed over all rounds.
    pub errors: u64,
    /// Of `errors`, UDP datagrams lost.
    pub lost: u64,
    /// Why rounds failed, if any did.
    pub failures: Vec<String>,
}

impl Summary {
    /// Summarizes the rounds of `server` under `load`.
    pub fn new(load: &str, server: &str, rounds: &[LoadResult], failures: Vec<String>) -> Summary {
        let med = |f: fn(&LoadResult) -> Option<f64>| {
            median(&rounds.iter().filter_map(f).collect::<Vec<_>>())
        };
        Summary {
            load: load.to_string(),
            server: server.to_string(),
            rounds: rounds.len(),
            msgs_per_sec: med(|r| Some(r.msgs_per_sec)),
            mbit_s: med(|r| Some(r.rx_mbit_s)),
            p50_us: med(|r| r.p50_us),
            p99_us: med(|r| r.p99_us),
            p999_us: med(|r| r.p999_us),
            cpu_us_per_msg: med(|r| r.server_cpu_us_per_msg),
            errors: rounds.iter().map(|r| r.errors.total()).sum(),
            lost: rounds.iter().map(|r| r.errors.lost).sum(),
            failures,
        }
    }
}

/// Renders the summaries as a Markdown table, with each server's msgs/s as
/// a ratio of each of `baselines`' under the same load (a column for each
/// baseline that ran).
pub fn markdown(rows: &[Summary], baselines: &[&str]) -> String {
    let baselines: Vec<&str> = baselines
        .iter()
        .copied()
        .filter(|b| rows.iter().any(|r| r.server == *b))
        .collect();
    let mut out = String::from(
        "| load | server | msgs/s | Mbit/s | p50 µs | p99 µs | p999 µs | server CPU µs/msg |",
    );
    for b in &baselines {
        // Writing to a String cannot fail.
        let _ = write!(out, " ratio vs {b} |");
    }
    out.push_str(" errors |\n|---|---|--:|--:|--:|--:|--:|--:|");
    out.push_str(&"--:|".repeat(baselines.len()));
    out.push_str("--:|\n");
    for r in rows {
        let _ = write!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.load,
            r.server,
            fmt(r.msgs_per_sec, 0),
            fmt(r.mbit_s, 1),
            fmt(r.p50_us, 1),
            fmt(r.p99_us, 1),
            fmt(r.p999_us, 1),
            fmt(r.cpu_us_per_msg, 2),
        );
        for b in &baselines {
            let _ = write!(out, " {} |", fmt(ratio(rows, r, b), 2));
        }
        let mut errors = r.errors.to_string();
        if r.lost > 0 {
            let _ = write!(errors, " ({} lost)", r.lost);
        }
        if !r.failures.is_empty() {
            let _ = write!(errors, " ({} failed rounds)", r.failures.len());
        }
        let _ = writeln!(out, " {errors} |");
    }
    out
}

/// `row`'s msgs/s divided by `baseline`'s under the same load.
fn ratio(rows: &[Summary], row: &Summary, baseline: &str) -> Option<f64> {
    let base = rows
        .iter()
        .find(|b| b.load == row.load && b.server == baseline)?
        .msgs_per_sec?;
    let mine = row.msgs_per_sec?;
    (base > 0.0).then(|| mine / base)
}

/// Formats with `decimals` decimals, `-` if absent.
pub fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// Draws msgs/s per load (x groups) per server (bars), log-scaled, as SVG.
pub fn svg_chart(rows: &[Summary], path: &Path) -> Result<()> {
    let loads = unique(rows.iter().map(|r| r.load.as_str()));
    let servers = unique(rows.iter().map(|r| r.server.as_str()));
    let max = rows
        .iter()
        .filter_map(|r| r.msgs_per_sec)
        .fold(1.0, f64::max);
    let min = rows
        .iter()
        .filter_map(|r| r.msgs_per_sec)
        .fold(max, f64::min);
    let y_low = (min / 2.0).max(1.0);
    let y_high = max * 2.0;

    let width = (160 * loads.len().max(1) + 200).max(800) as u32;
    let root = SVGBackend::new(path, (width, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let n = loads.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("selecho-bench: messages/s (log scale)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..n - 0.5, (y_low..y_high).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("msgs/s")
        .draw()
        .map_err(plot_err)?;
    // Load names go under the centre of each group, placed in pixels.
    let label_style = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, load) in loads.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64, y_low));
        root.draw(&Text::new(*load, (x, y + 8), label_style.clone()))
            .map_err(plot_err)?;
    }

    let group = 0.8;
    let bar = group / servers.len().max(1) as f64;
    for (j, server) in servers.iter().enumerate() {
        let color = Palette99::pick(j).to_rgba();
        let bars = rows.iter().filter(|r| r.server == *server).filter_map(|r| {
            let i = loads.iter().position(|l| *l == r.load)? as f64;
            let x0 = i - group / 2.0 + j as f64 * bar;
            Some(Rectangle::new(
                [(x0, y_low), (x0 + bar * 0.9, r.msgs_per_sec?.max(y_low))],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(plot_err)?
            .label(*server)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Distinct items in first-seen order.
fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Plotters' errors borrow the backend; keep only their text.
fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing chart: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::ErrorCounts;

    fn result(msgs: f64) -> LoadResult {
        LoadResult {
            mode: "pingpong".into(),
            conns: 1,
            connected: 1,
            size: 64,
            secs: 1.0,
            messages: msgs as u64,
            msgs_per_sec: msgs,
            tx_mbit_s: 1.0,
            rx_mbit_s: 1.0,
            p50_us: Some(10.0),
            p99_us: Some(20.0),
            p999_us: Some(30.0),
            errors: ErrorCounts::default(),
            server_cpu_s: None,
            server_cpu_us_per_msg: None,
            client_cpu_s: None,
        }
    }

    #[test]
    fn table_has_medians_and_ratio() {
        let rows = vec![
            Summary::new(
                "pp 1x64",
                "tokio-mt",
                &[result(100.0), result(300.0), result(200.0)],
                vec![],
            ),
            Summary::new("pp 1x64", "selecho", &[result(300.0)], vec![]),
        ];
        let md = markdown(&rows, BASELINES);
        assert!(md.contains("| pp 1x64 | tokio-mt | 200 |"), "{md}");
        assert!(md.contains("| 1.50 |"), "{md}");
        assert!(!md.contains("ratio vs epoll"), "{md}");
    }

    #[test]
    fn a_ratio_column_for_each_baseline_that_ran() {
        let mut lossy = result(300.0);
        lossy.errors.lost = 2;
        let rows = vec![
            Summary::new("pp 1x64", "tokio-mt", &[result(200.0)], vec![]),
            Summary::new("pp 1x64", "epoll", &[result(400.0)], vec![]),
            Summary::new("pp 1x64", "selecho", &[lossy], vec![]),
        ];
        let md = markdown(&rows, BASELINES);
        let header = md.lines().next().unwrap_or_default();
        assert!(
            header.ends_with("| ratio vs tokio-mt | ratio vs epoll | errors |"),
            "{md}"
        );
        assert!(
            md.contains("| selecho | 300 |") && md.contains("| 1.50 | 0.75 | 2 (2 lost) |"),
            "{md}"
        );
        let columns = |line: &str| line.matches('|').count();
        assert!(md.lines().all(|l| columns(l) == columns(header)), "{md}");
    }

    #[test]
    fn chart_is_written() -> Result<()> {
        let rows = vec![
            Summary::new("pp 1x64", "tokio-mt", &[result(1000.0)], vec![]),
            Summary::new("pp 1x64", "selecho", &[result(3000.0)], vec![]),
            Summary::new("stream", "selecho", &[], vec!["boom".into()]),
        ];
        let path =
            std::env::temp_dir().join(format!("selecho-bench-test-{}.svg", std::process::id()));
        svg_chart(&rows, &path)?;
        let svg = std::fs::read_to_string(&path)?;
        std::fs::remove_file(&path)?;
        assert!(svg.contains("<svg") && svg.contains("selecho"));
        Ok(())
    }
}
