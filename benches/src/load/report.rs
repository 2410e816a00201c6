//! Latency reports: an HDR histogram of request latencies plus the errors seen, printed the
//! way etcd's benchmark tool prints its report (Summary, Response time histogram, Latency
//! distribution at p10 … p99.9, Error distribution), or as one JSON object for scripts.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The percentiles etcd's tool reports.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// Highest latency recorded (longer ones are clamped), in microseconds: 1 hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// Latencies and errors of one run (or one client's share of it; see [`Report::merge`]).
#[derive(Debug, Clone)]
pub struct Report {
    hist: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

impl Report {
    /// An empty report (microsecond resolution, 3 significant digits).
    pub fn new() -> Self {
        // Constant, valid bounds: this cannot fail.
        let hist = Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds");
        Report { hist, errors: BTreeMap::new() }
    }

    /// Records one request's latency.
    pub fn ok(&mut self, took: Duration) {
        let us = (took.as_micros() as u64).clamp(1, MAX_MICROS);
        self.hist.saturating_record(us);
    }

    /// Records one failed request.
    pub fn err(&mut self, message: impl Into<String>) {
        *self.errors.entry(message.into()).or_default() += 1;
    }

    /// Adds another report's results to this one.
    pub fn merge(&mut self, other: &Report) {
        let _ = self.hist.add(&other.hist);
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// Successful requests.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Failed requests.
    pub fn errors(&self) -> u64 {
        self.errors.values().sum()
    }

    fn secs(us: f64) -> f64 {
        us / 1e6
    }

    /// The latency at percentile `p` (0–100), in seconds.
    pub fn percentile(&self, p: f64) -> f64 {
        Self::secs(self.hist.value_at_percentile(p) as f64)
    }

    /// Requests per second over `total` wall time.
    pub fn rps(&self, total: Duration) -> f64 {
        let t = total.as_secs_f64();
        if t > 0.0 {
            self.count() as f64 / t
        } else {
            0.0
        }
    }

    /// The report as etcd's benchmark tool prints it (`%4.4f`, or full precision).
    pub fn text(&self, total: Duration, precise: bool) -> String {
        let f = |v: f64| if precise { format!("{v}") } else { format!("{v:.4}") };
        let mut s = String::new();
        if self.count() > 0 {
            let (min, max) = (self.hist.min() as f64, self.hist.max() as f64);
            s += "\nSummary:\n";
            s += &format!("  Total:\t{} secs.\n", f(total.as_secs_f64()));
            s += &format!("  Slowest:\t{} secs.\n", f(Self::secs(max)));
            s += &format!("  Fastest:\t{} secs.\n", f(Self::secs(min)));
            s += &format!("  Average:\t{} secs.\n", f(Self::secs(self.hist.mean())));
            s += &format!("  Stddev:\t{} secs.\n", f(Self::secs(self.hist.stdev())));
            s += &format!("  Requests/sec:\t{}\n", f(self.rps(total)));
            s += "\nResponse time histogram:\n";
            // Ten equal buckets from the fastest to the slowest, as etcd's tool draws them.
            let step = (max - min) / 10.0;
            let edges: Vec<f64> =
                (0..=10).map(|i| if i == 10 { max } else { min + step * i as f64 }).collect();
            let mut counts = vec![0u64; edges.len()];
            for v in self.hist.iter_recorded() {
                let x = self.hist.highest_equivalent(v.value_iterated_to()) as f64;
                let i = edges.iter().position(|e| x <= *e).unwrap_or(edges.len() - 1);
                counts[i] += v.count_at_value();
            }
            let most = counts.iter().copied().max().unwrap_or(0).max(1);
            for (e, c) in edges.iter().zip(&counts) {
                let bar = "∎".repeat((c * 40 / most) as usize);
                s += &format!("  {} [{c}]\t|{bar}\n", f(Self::secs(*e)));
            }
            s += "\nLatency distribution:\n";
            for p in PERCENTILES {
                let v = self.percentile(p);
                if v > 0.0 {
                    s += &format!("  {p}% in {} secs.\n", f(v));
                }
            }
        }
        if !self.errors.is_empty() {
            s += "\nError distribution:\n";
            for (k, v) in &self.errors {
                s += &format!("  [{v}]\t{k}\n");
            }
        }
        s
    }

    /// The report as one JSON object (seconds for latencies).
    pub fn json(&self, total: Duration) -> serde_json::Value {
        let mut pct = serde_json::Map::new();
        for p in PERCENTILES {
            pct.insert(format!("p{p}"), self.percentile(p).into());
        }
        serde_json::json!({
            "total_secs": total.as_secs_f64(),
            "requests": self.count(),
            "errors": self.errors(),
            "requests_per_sec": self.rps(total),
            "slowest": Self::secs(self.hist.max() as f64),
            "fastest": Self::secs(self.hist.min() as f64),
            "average": Self::secs(self.hist.mean()),
            "stddev": Self::secs(self.hist.stdev()),
            "percentiles": pct,
            "error_distribution": self.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_in_etcds_shape() {
        let mut a = Report::new();
        let mut b = Report::new();
        for i in 1..=100u64 {
            a.ok(Duration::from_micros(i * 100));
        }
        b.ok(Duration::from_millis(20));
        b.err("etcdserver: request timed out");
        a.merge(&b);
        assert_eq!((a.count(), a.errors()), (101, 1));
        let t = a.text(Duration::from_secs(1), false);
        assert!(t.contains("  Requests/sec:\t101.0000\n"), "{t}");
        assert!(t.contains("  Slowest:\t0.0200 secs.\n"), "{t}");
        assert!(t.contains("  50% in 0.0051 secs.\n"), "{t}");
        assert!(t.contains("  99.9% in 0.0200 secs.\n"), "{t}");
        assert!(t.contains("  [1]\tetcdserver: request timed out\n"), "{t}");
        let hist_lines = t.lines().filter(|l| l.contains("\t|")).count();
        assert_eq!(hist_lines, 11);
        let j = a.json(Duration::from_secs(1));
        assert_eq!(j["requests"], 101);
        assert!((j["percentiles"]["p99"].as_f64().unwrap() - 0.0100).abs() < 0.0002);
    }
}
