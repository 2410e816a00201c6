//! Go's duration syntax ("1h30m", "10s", "500ms", "1.5h"), as etcd's flags and etcdctl's
//! options take it, and Go's `Duration.String` ([`format_go_duration`]), as etcd prints it.

use std::time::Duration;

/// Go's `time.Duration.String`: `1h2m3.5s` from a second up, else `350ms`, `2.5µs`, `7ns`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    // `n / unit` with the fraction's trailing zeros dropped (integer arithmetic, as Go's).
    let frac = |n: u128, unit: u128, digits: usize| {
        let f = format!("{:0digits$}", n % unit);
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            format!("{}", n / unit)
        } else {
            format!("{}.{f}", n / unit)
        }
    };
    match nanos {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", frac(n, 1_000, 3)),
        n if n < 1_000_000_000 => format!("{}ms", frac(n, 1_000_000, 6)),
        n => {
            let secs = n / 1_000_000_000;
            let (h, m) = (secs / 3600, (secs % 3600) / 60);
            let s = frac(n % 60_000_000_000, 1_000_000_000, 9);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// Parses a Go duration ("1h30m", "10s", "500ms", "1.5h").
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_go() {
        let f = |d| format_go_duration(d);
        assert_eq!(f(Duration::from_millis(62_003)), "1m2.003s");
        assert_eq!(f(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(f(Duration::from_nanos(1_300_000_000)), "1.3s");
        assert_eq!(f(Duration::from_nanos(1_002_173)), "1.002173ms");
        assert_eq!(f(Duration::from_nanos(987_786)), "987.786µs");
        assert_eq!(f(Duration::from_millis(2500)), "2.5s");
        assert_eq!(f(Duration::ZERO), "0s");
    }

    #[test]
    fn reads_go_durations() {
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("2us"), Some(Duration::from_micros(2)));
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("h"), None);
    }
}
