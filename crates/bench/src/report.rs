//! Samples, medians, the results table and the machine description.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Repeated timings of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn push(&mut self, sample: Duration) {
        self.0.push(sample);
    }

    /// The median (the mean of the middle two for an even count).
    pub fn median(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        match sorted.len() {
            0 => Duration::ZERO,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
        }
    }

    /// All samples in milliseconds, in the order taken.
    pub fn list(&self) -> String {
        let all: Vec<String> = self.0.iter().map(|d| format!("{:.0}", ms(*d))).collect();
        format!("[{}] ms", all.join(", "))
    }
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Whether a ratio must stay at most, or at least, its target.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtMost(limit) => ratio <= limit,
            Target::AtLeast(limit) => ratio >= limit,
        }
    }

    fn text(self) -> String {
        match self {
            Target::AtMost(limit) => format!("≤ {limit:.1}"),
            Target::AtLeast(limit) => format!("≥ {limit:.1}"),
        }
    }
}

/// One bar's result: our median, the baseline's, their ratio.
pub struct Bar {
    pub name: String,
    pub ours: String,
    pub baseline: String,
    pub ratio: f64,
    pub target: Target,
    /// Raw samples and anything else worth knowing, one line each.
    pub details: Vec<String>,
}

impl Bar {
    pub fn met(&self) -> bool {
        self.ratio.is_finite() && self.target.met(self.ratio)
    }
}

/// The results as a Markdown table, then each bar's details.
pub fn render(bars: &[Bar], machine: &str, date: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Measured {date} on {machine}.\n");
    let _ = writeln!(out, "| bar | ours (durable root) | baseline | ratio | target | met? |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for bar in bars {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {} |",
            bar.name,
            bar.ours,
            bar.baseline,
            bar.ratio,
            bar.target.text(),
            if bar.met() { "yes" } else { "**no**" }
        );
    }
    for bar in bars {
        let _ = writeln!(out, "\n{}:", bar.name);
        for line in &bar.details {
            let _ = writeln!(out, "- {line}");
        }
    }
    out
}

/// Cores, CPU model and memory, from `/proc` where available.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0);
    match mem_gib {
        Some(gib) => format!("{cores} cores ({model}), {gib:.1} GiB RAM"),
        None => format!("{cores} cores ({model})"),
    }
}

/// The 1-minute load average (other work on the machine skews timings).
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Now as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        let of = |v: &[u64]| Samples(v.iter().map(|m| Duration::from_millis(*m)).collect()).median();
        assert_eq!(of(&[]), Duration::ZERO);
        assert_eq!(of(&[5]), Duration::from_millis(5));
        assert_eq!(of(&[9, 1, 5]), Duration::from_millis(5));
        assert_eq!(of(&[4, 1, 2, 3]), Duration::from_micros(2500));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn targets() {
        assert!(Target::AtMost(2.0).met(2.0) && !Target::AtMost(2.0).met(2.01));
        assert!(Target::AtLeast(0.5).met(0.5) && !Target::AtLeast(0.5).met(0.49));
        assert_eq!(Target::AtLeast(0.5).text(), "≥ 0.5");
    }
}
