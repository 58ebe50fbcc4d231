//! Completed operations over time, from the load generator's per-operation samples
//! (`load --samples`: `<start, Unix µs> <latency µs>` per line), with events marked on it.
//!
//! `cargo xtask demo --replace` uses it to show what a membership change does to a running
//! load: operations completed per interval (an operation completes at start + latency), the
//! median rate before the change as the baseline, the longest time without a completed
//! operation during the change, and the largest drop below the baseline and how long it lasted.
//! It renders the series as a sparkline with the events marked under it, a per-second table,
//! JSON and an SVG plot (`crate::bench::svg`).

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::bench::svg;

/// Something that happened during the run: when (Unix µs), a one-letter mark, what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) at_us: u64,
    pub(crate) mark: char,
    pub(crate) what: String,
}

/// The completion times (Unix µs, sorted) of the operations in `load --samples` output.
pub(crate) fn completions(samples: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for line in samples.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(start)), Some(Ok(latency)), None) => out.push(start + latency),
            _ => bail!("not a sample line (`<start µs> <latency µs>`): {line:?}"),
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Operations completed per interval: interval `k` is `[start + k * interval, start + (k + 1) * interval)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) start_us: u64,
    pub(crate) interval_us: u64,
    pub(crate) counts: Vec<u64>,
}

impl Series {
    /// The whole intervals from `start_us` up to `end_us` (a last partial interval is left out,
    /// as its count would read as a drop).
    pub(crate) fn of(completions: &[u64], start_us: u64, end_us: u64, interval_us: u64) -> Series {
        let n = (end_us.saturating_sub(start_us) / interval_us) as usize;
        let mut counts = vec![0; n];
        for &t in completions {
            if let Some(k) = t.checked_sub(start_us).map(|d| (d / interval_us) as usize) {
                if let Some(c) = counts.get_mut(k) {
                    *c += 1;
                }
            }
        }
        Series { start_us, interval_us, counts }
    }

    /// Operations per second in interval `k`.
    pub(crate) fn rate(&self, k: usize) -> f64 {
        self.counts[k] as f64 * 1e6 / self.interval_us as f64
    }

    /// The interval holding `at_us` (clamped to the series).
    pub(crate) fn index(&self, at_us: u64) -> usize {
        let k = (at_us.saturating_sub(self.start_us) / self.interval_us) as usize;
        k.min(self.counts.len().saturating_sub(1))
    }

    /// Seconds from the start to the beginning of interval `k`.
    pub(crate) fn seconds(&self, k: usize) -> f64 {
        (k as u64 * self.interval_us) as f64 / 1e6
    }

    /// The median rate of the intervals that begin at least `skip_us` after the start and end
    /// by `before_us` (the ramp-up of the load left out); `None` if there are none.
    pub(crate) fn baseline(&self, skip_us: u64, before_us: u64) -> Option<f64> {
        let mut rates: Vec<f64> = (0..self.counts.len())
            .filter(|&k| {
                let from = self.start_us + k as u64 * self.interval_us;
                from >= self.start_us + skip_us && from + self.interval_us <= before_us
            })
            .map(|k| self.rate(k))
            .collect();
        median(&mut rates)
    }

    /// The lowest interval among those overlapping `[from_us, to_us]`, how far below `baseline` it
    /// is, and how long the run of intervals around it stayed below `below` times the baseline.
    pub(crate) fn largest_drop(&self, baseline: f64, from_us: u64, to_us: u64, below: f64) -> Option<Drop> {
        if self.counts.is_empty() || baseline <= 0.0 || to_us < self.start_us {
            return None;
        }
        let (a, b) = (self.index(from_us), self.index(to_us));
        let at = (a..=b).min_by(|&x, &y| self.rate(x).total_cmp(&self.rate(y)))?;
        let percent = (1.0 - self.rate(at) / baseline).max(0.0) * 100.0;
        let low = |k: usize| self.rate(k) < below * baseline;
        let lasted = if low(at) {
            let first = (0..=at).rev().take_while(|&k| low(k)).last().unwrap_or(at);
            let last = (at..self.counts.len()).take_while(|&k| low(k)).last().unwrap_or(at);
            last - first + 1
        } else {
            0
        };
        Some(Drop { at, percent, lasted_us: lasted as u64 * self.interval_us, below })
    }
}

/// The largest drop in throughput below the baseline (see [`Series::largest_drop`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Drop {
    /// The interval with the lowest rate.
    pub(crate) at: usize,
    /// How far below the baseline that rate is, in percent (0 if above).
    pub(crate) percent: f64,
    /// How long the intervals around it stayed below `below` times the baseline.
    pub(crate) lasted_us: u64,
    pub(crate) below: f64,
}

/// The median of `values` (sorted in place); `None` if empty.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// The longest time without a completed operation that overlaps `[from_us, to_us]`, and when
/// it began: from the last completion before it to the first after it (or the window's ends
/// where there is none). `completions` is sorted.
pub(crate) fn longest_gap(completions: &[u64], from_us: u64, to_us: u64) -> (u64, u64) {
    let first = completions.partition_point(|&t| t < from_us);
    let last = completions.partition_point(|&t| t <= to_us);
    let before = first.checked_sub(1).map_or(from_us, |i| completions[i]);
    let after = completions.get(last).copied().unwrap_or(to_us);
    let mut points = vec![before];
    points.extend_from_slice(&completions[first..last]);
    points.push(after);
    points
        .windows(2)
        .map(|w| (w[1].saturating_sub(w[0]), w[0]))
        .max_by_key(|&(gap, _)| gap)
        .unwrap_or((0, from_us))
}

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per count, scaled to `max`: a space for none, then eight heights.
pub(crate) fn sparkline(counts: &[u64], max: u64) -> String {
    counts
        .iter()
        .map(|&c| match c {
            0 => ' ',
            c => BLOCKS[((c * 8).div_ceil(max.max(1)) as usize).clamp(1, 8) - 1],
        })
        .collect()
}

/// The series as text: rows of `per_row` intervals as a sparkline, each event's mark under the
/// interval it happened in, then the events and a table of operations per second.
pub(crate) fn render(series: &Series, events: &[Event], per_row: usize, name: &str) -> String {
    let max = series.counts.iter().copied().max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{name}: completed operations per {} ms ('{}' up to {:.0} ops/s, blank: none)",
        series.interval_us / 1000,
        BLOCKS[7],
        max as f64 * 1e6 / series.interval_us as f64,
    );
    let mut marks = vec![' '; series.counts.len()];
    for e in events {
        if !series.counts.is_empty() {
            marks[series.index(e.at_us)] = e.mark;
        }
    }
    for (row, chunk) in series.counts.chunks(per_row.max(1)).enumerate() {
        let from = row * per_row.max(1);
        let _ = writeln!(out, "{:>6.1} s |{}|", series.seconds(from), sparkline(chunk, max));
        let m: String = marks[from..from + chunk.len()].iter().collect();
        if !m.trim().is_empty() {
            let _ = writeln!(out, "          {}", m.trim_end());
        }
    }
    for e in events {
        let t = e.at_us.saturating_sub(series.start_us) as f64 / 1e6;
        let _ = writeln!(out, "  {} {t:>6.2} s  {}", e.mark, e.what);
    }
    let per_second = (1_000_000 / series.interval_us.max(1)).max(1) as usize;
    let seconds: Vec<u64> = series.counts.chunks(per_second).map(|c| c.iter().sum()).collect();
    let _ = writeln!(out, "{name}: completed operations per second");
    for (row, chunk) in seconds.chunks(10).enumerate() {
        let cells: Vec<String> = chunk.iter().map(|c| format!("{c:>6}")).collect();
        let _ = writeln!(out, "{:>6} s {}", row * 10, cells.join(""));
    }
    out
}

/// The series and its events as JSON.
pub(crate) fn to_json(series: &Series, events: &[Event]) -> Value {
    let s = |us: u64| us.saturating_sub(series.start_us) as f64 / 1e6;
    json!({
        "interval_ms": series.interval_us as f64 / 1000.0,
        "start_unix_us": series.start_us,
        "intervals": (0..series.counts.len()).map(|k| json!({
            "t_s": series.seconds(k),
            "ops": series.counts[k],
            "ops_per_s": series.rate(k),
        })).collect::<Vec<_>>(),
        "events": events.iter().map(|e| json!({
            "t_s": s(e.at_us),
            "mark": e.mark.to_string(),
            "what": e.what,
        })).collect::<Vec<_>>(),
    })
}

/// The series as an SVG plot, each event labelled at its interval, the baseline as a line.
pub(crate) fn plot(series: &Series, events: &[Event], baseline: Option<f64>, labels: svg::Labels) -> String {
    let mut points: Vec<svg::Point> = (0..series.counts.len())
        .map(|k| svg::Point {
            x: series.seconds(k) + series.interval_us as f64 / 2e6,
            y: series.rate(k),
            label: String::new(),
        })
        .collect();
    for e in events {
        if let Some(p) = points.get_mut(series.index(e.at_us)) {
            if !p.label.is_empty() {
                p.label.push_str(", ");
            }
            p.label.push_str(&format!("{}: {}", e.mark, e.what));
        }
    }
    let mut lines = Vec::new();
    if let (Some(b), Some(first), Some(last)) = (baseline, points.first(), points.last()) {
        let flat = |x: f64| svg::Point { x, y: b, label: String::new() };
        lines.push(svg::Series {
            name: "median before".to_owned(),
            color: "#999999",
            points: vec![flat(first.x), flat(last.x)],
        });
    }
    lines.insert(0, svg::Series { name: "ops/s".to_owned(), color: "#1f77b4", points });
    svg::plot_linear(&labels, &lines).replace("point labels: clients", "labels: membership steps")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_complete_at_start_plus_latency() {
        assert_eq!(completions("100 5\n50 70\n\n10 1\n").unwrap(), [11, 105, 120]);
        assert!(completions("1\n").is_err());
        assert!(completions("1 2 3\n").is_err());
        assert!(completions("a b\n").is_err());
    }

    #[test]
    fn completions_fall_into_whole_intervals() {
        let s = Series::of(&[5, 10, 11, 19, 20, 35, 41], 10, 42, 10);
        assert_eq!(s.counts, [3, 1, 1], "5 is before the start; 41 in the partial last interval");
        assert_eq!(s.rate(0), 300_000.0);
        assert_eq!((s.index(0), s.index(25), s.index(99)), (0, 1, 2));
        assert_eq!(s.seconds(2), 20e-6);
        assert!(Series::of(&[1, 2], 10, 5, 10).counts.is_empty());
    }

    #[test]
    fn the_baseline_is_the_median_before_the_change_after_the_ramp_up() {
        let s = Series { start_us: 0, interval_us: 10, counts: vec![1, 9, 5, 7, 6, 0, 0] };
        // Intervals starting at 10 or later and ending by 50: 9, 5, 7, 6.
        assert_eq!(s.baseline(10, 50), Some(6.5e5));
        assert_eq!(s.baseline(10, 45), Some(7e5));
        assert_eq!(s.baseline(100, 50), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn the_largest_drop_is_measured_against_the_baseline_and_timed() {
        let s = Series { start_us: 0, interval_us: 10, counts: vec![10, 10, 7, 2, 7, 9, 10, 1] };
        let base = s.rate(0);
        // Over the change [20, 60]: the lowest is interval 3, at 20% of the baseline; intervals
        // 2-4 are below 80% of it.
        let d = s.largest_drop(base, 20, 60, 0.8).unwrap();
        assert_eq!(d.at, 3);
        assert!((d.percent - 80.0).abs() < 1e-9, "{d:?}");
        assert_eq!(d.lasted_us, 30);
        // Interval 7 is outside the window; a shallow dip lasts no time below the threshold.
        let d = s.largest_drop(base, 50, 60, 0.8).unwrap();
        assert_eq!((d.at, d.lasted_us), (5, 0));
        assert!((d.percent - 10.0).abs() < 1e-9);
        // Above the baseline is no drop at all.
        assert_eq!(s.largest_drop(s.rate(5), 0, 10, 0.8).unwrap().percent, 0.0);
        assert!(s.largest_drop(0.0, 0, 10, 0.8).is_none());
    }

    #[test]
    fn the_longest_gap_overlaps_the_window() {
        let c = [0, 10, 20, 50, 55, 100, 130];
        // Inside [15, 110]: 20 -> 50 (30) and 55 -> 100 (45).
        assert_eq!(longest_gap(&c, 15, 110), (45, 55));
        // A gap that began before the window counts from its real start.
        assert_eq!(longest_gap(&c, 60, 70), (45, 55));
        // No completions at all: the whole window.
        assert_eq!(longest_gap(&[], 5, 9), (4, 5));
        // Nothing after the window: up to its end.
        assert_eq!(longest_gap(&[0, 1], 2, 10), (9, 1));
    }

    #[test]
    fn the_text_shows_a_sparkline_with_marks_and_a_table_per_second() {
        assert_eq!(sparkline(&[0, 1, 4, 8], 8), " ▁▄█");
        assert_eq!(sparkline(&[3], 0), "█");
        let s = Series { start_us: 1_000_000, interval_us: 250_000, counts: vec![8, 8, 0, 4, 8, 8, 8, 8] };
        let events = [
            Event { at_us: 1_600_000, mark: 'a', what: "add replica 4".into() },
            Event { at_us: 2_900_000, mark: 'r', what: "remove replica 1".into() },
        ];
        let text = render(&s, &events, 4, "demo");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "demo: completed operations per 250 ms ('█' up to 32 ops/s, blank: none)");
        assert_eq!(lines[1], "   0.0 s |██ ▄|");
        assert_eq!(lines[2], format!("{}a", " ".repeat(12)), "under interval 2");
        assert_eq!(lines[3], "   1.0 s |████|");
        assert_eq!(lines[4], format!("{}r", " ".repeat(13)), "under interval 7");
        assert_eq!(lines[5], "  a   0.60 s  add replica 4");
        assert_eq!(lines[6], "  r   1.90 s  remove replica 1");
        assert_eq!(lines[8], "     0 s     20    32");
        let j = to_json(&s, &events);
        assert_eq!(j["intervals"].as_array().unwrap().len(), 8);
        assert_eq!(j["intervals"][3]["ops_per_s"], 16.0);
        assert_eq!(j["events"][1]["mark"], "r");
        let labels = svg::Labels { title: "t".into(), subtitle: "s".into(), x: "x".into(), y: "y".into() };
        let doc = plot(&s, &events, Some(30.0), labels);
        assert!(doc.contains("a: add replica 4") && doc.contains("median before"), "{doc}");
        assert!(doc.contains("labels: membership steps") && !doc.contains("clients"), "{doc}");
    }
}
