//! The process's metrics beyond the prometheus crate's `process_*`: etcd's `os_fd_*`, Go's
//! `process_virtual_memory_max_bytes`, the scrape handler's own `promhttp_*` counters, and
//! `rusted_allocations_total` when the binary counts its allocations. Read when scraped.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The binary's allocation count, when it has a counting allocator (see
/// [`count_allocations_with`]).
static ALLOCATIONS: OnceLock<fn() -> u64> = OnceLock::new();

/// Exposes `count()` (allocations since start) as `rusted_allocations_total`, for metrics
/// registries built after this call. Set once by a binary built with a counting allocator.
pub fn count_allocations_with(count: fn() -> u64) {
    let _ = ALLOCATIONS.set(count);
}

/// The process's metrics.
#[derive(Debug)]
pub struct ProcessMetrics {
    fd_used: IntGauge,
    fd_limit: IntGauge,
    vm_max: Gauge,
    scrapes_in_flight: IntGauge,
    scrapes: IntCounterVec,
    allocations: Option<(IntCounter, fn() -> u64)>,
}

/// The soft limit on a line of /proc/self/limits (`None`: no such line; unlimited: u64::MAX).
fn soft_limit(limits: &str, name: &str) -> Option<u64> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(name))?;
    let soft = rest.split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// A scrape being served: counted in flight until dropped, then by its status code.
#[derive(Debug)]
pub struct Scrape<'a> {
    m: &'a ProcessMetrics,
    code: &'static str,
}

impl Scrape<'_> {
    /// The answer's status code.
    pub fn answered(&mut self, code: u16) {
        self.code = match code {
            200 => "200",
            503 => "503",
            _ => "500",
        };
    }
}

impl Drop for Scrape<'_> {
    fn drop(&mut self) {
        self.m.scrapes_in_flight.dec();
        self.m.scrapes.with_label_values(&[self.code]).inc();
    }
}

impl ProcessMetrics {
    pub(super) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let fd_used = IntGauge::new("os_fd_used", "The number of used file descriptors.")?;
        let fd_limit = IntGauge::new("os_fd_limit", "The file descriptor limit.")?;
        let vm_max = Gauge::new(
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
        )?;
        let scrapes_in_flight = IntGauge::new(
            "promhttp_metric_handler_requests_in_flight",
            "Current number of scrapes being served.",
        )?;
        let scrapes = IntCounterVec::new(
            Opts::new(
                "promhttp_metric_handler_requests_total",
                "Total number of scrapes by HTTP status code.",
            ),
            &["code"],
        )?;
        for code in ["200", "500", "503"] {
            scrapes.with_label_values(&[code]);
        }
        registry.register(Box::new(fd_used.clone()))?;
        registry.register(Box::new(fd_limit.clone()))?;
        registry.register(Box::new(vm_max.clone()))?;
        registry.register(Box::new(scrapes_in_flight.clone()))?;
        registry.register(Box::new(scrapes.clone()))?;
        let allocations = match ALLOCATIONS.get() {
            Some(count) => {
                let c = IntCounter::new(
                    "rusted_allocations_total",
                    "Heap allocations (and reallocations) since the process started.",
                )?;
                registry.register(Box::new(c.clone()))?;
                Some((c, *count))
            }
            None => None,
        };
        Ok(ProcessMetrics { fd_used, fd_limit, vm_max, scrapes_in_flight, scrapes, allocations })
    }

    /// A scrape starts (see [`Scrape`]).
    pub fn scrape(&self) -> Scrape<'_> {
        self.scrapes_in_flight.inc();
        Scrape { m: self, code: "500" }
    }

    /// Reads /proc (at scrape time); what cannot be read keeps its last value.
    pub(super) fn read(&self) {
        if let Some((c, count)) = &self.allocations {
            super::set_counter(c, count());
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.fd_used.set(dir.count() as i64);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            if let Some(n) = soft_limit(&limits, "Max open files") {
                self.fd_limit.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            if let Some(n) = soft_limit(&limits, "Max address space") {
                self.vm_max.set(n as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_as_the_kernel_prints_them() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n\
                      Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(soft_limit(limits, "Max open files"), Some(1024));
        assert_eq!(soft_limit(limits, "Max address space"), Some(u64::MAX));
        assert_eq!(soft_limit(limits, "Max locked memory"), None);
    }

    #[test]
    fn a_scrape_counts_in_flight_then_by_code() {
        let r = Registry::new();
        let m = ProcessMetrics::new(&r).expect("metrics");
        {
            let mut s = m.scrape();
            assert_eq!(m.scrapes_in_flight.get(), 1);
            s.answered(200);
        }
        drop(m.scrape());
        assert_eq!(m.scrapes_in_flight.get(), 0);
        assert_eq!(m.scrapes.with_label_values(&["200"]).get(), 1);
        assert_eq!(m.scrapes.with_label_values(&["500"]).get(), 1);
        m.read();
        assert!(m.fd_used.get() > 0);
    }
}
