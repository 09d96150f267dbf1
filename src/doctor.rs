//! `bale doctor`: checks the host for what bale needs (io_uring, O_DIRECT on each data
//! directory, limits) and for what moves random-read latency (scheduler, governor, C-states,
//! THP, IRQs, isolated cores, socket backlog, busy polling, clock), and prints one line per
//! check: PASS, INFO (optional tuning, stated), WARN, FAIL or SKIP (could not read: says what
//! and why), each WARN/FAIL with the command that fixes it. Exit code 1 on any FAIL.
//!
//! It works unprivileged: what it cannot read is a SKIP, never an error. The settings and why
//! they matter are explained in tuning/README.md.

mod disk;
mod host;

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Data directory to check (repeat for several, as for `serve`). Created for the check if
    /// missing, and removed again afterwards.
    #[arg(long = "data", env = "BALE_DATA", value_delimiter = ',')]
    pub data: Vec<PathBuf>,

    /// Cores bale will run on (for the open-files limit check). Default: all available.
    #[arg(long, env = "BALE_CORES")]
    pub cores: Option<usize>,

    /// Connection limit per core bale will run with (for the open-files limit check).
    #[arg(long, env = "BALE_MAX_CONNECTIONS_PER_CORE", default_value_t = 4096)]
    pub max_connections_per_core: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Info,
    Skip,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Info => "INFO",
            Status::Skip => "SKIP",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Finding {
    pub status: Status,
    pub check: String,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    pub fn new(status: Status, check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status,
            check: check.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// A file or setting that could not be read: SKIP, saying what and why.
    pub fn unreadable(check: impl Into<String>, what: &str, e: &std::io::Error) -> Self {
        let why = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "permission denied (run as root to check this)".to_string()
        } else {
            e.to_string()
        };
        Self::new(Status::Skip, check, format!("could not read {what}: {why}"))
    }
}

/// Reads a small sysfs/procfs file, trimmed.
pub fn read_trim(path: &str) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

/// The whole report, printed; the exit code (1 on any FAIL, else 0).
pub fn run(args: &DoctorArgs) -> anyhow::Result<i32> {
    let findings = collect(args);
    print!("{}", render(&findings));
    Ok(if findings.iter().any(|f| f.status == Status::Fail) {
        1
    } else {
        0
    })
}

/// Every check, in report order.
pub fn collect(args: &DoctorArgs) -> Vec<Finding> {
    let cores = args.cores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut out = Vec::new();
    host::runtime_checks(&mut out, cores, args.max_connections_per_core);
    if args.data.is_empty() {
        out.push(Finding::new(
            Status::Skip,
            "data dirs",
            "no --data given: O_DIRECT, filesystem, free space and device queue not checked",
        ));
    }
    for d in &args.data {
        disk::check_dir(&mut out, d);
    }
    if !args.data.is_empty() {
        let dirs = args.data.len();
        let (stored, failed) = crate::layout::inspect(&args.data);
        // A set not initialised yet gets the default for its directory count.
        let r = stored.unwrap_or_else(|| crate::layout::Redundancy::default_for(dirs));
        let mut line = crate::layout::redundancy_line(r, dirs, failed);
        if stored.is_none() {
            line.push_str(&format!(
                " (not initialised yet: the default for {dirs} directories; {})",
                crate::layout::DEFAULT_TABLE
            ));
        }
        let f = match r {
            crate::layout::Redundancy::None if dirs == 1 => {
                Finding::new(Status::Info, "redundancy", line)
            }
            crate::layout::Redundancy::None => Finding::new(Status::Warn, "redundancy", line).fix(
                "this set was made without redundancy and keeps it: back up the data directories, \
                 or move the data to a new set made with --redundancy mirror",
            ),
            _ if failed > 0 => Finding::new(Status::Warn, "redundancy", line).fix(
                "put an empty directory in each failed position and restart bale (or run \
                 `bale disk replace`): the lost copies are rebuilt from the surviving ones",
            ),
            _ => Finding::new(Status::Pass, "redundancy", line),
        };
        out.push(f);
    }
    host::tuning_checks(&mut out);
    out
}

pub fn render(findings: &[Finding]) -> String {
    let mut s = String::new();
    let count = |st: Status| findings.iter().filter(|f| f.status == st).count();
    let _ = writeln!(
        s,
        "bale doctor {}: {} FAIL, {} WARN, {} PASS, {} INFO, {} SKIP (tuning/README.md explains each)",
        env!("CARGO_PKG_VERSION"),
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Pass),
        count(Status::Info),
        count(Status::Skip)
    );
    for f in findings {
        let _ = writeln!(s, "{}  {}: {}", f.status.label(), f.check, f.detail);
        if let Some(fix) = &f.fix {
            let _ = writeln!(s, "      fix: {fix}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_and_fix_lines() {
        let f = vec![
            Finding::new(Status::Pass, "a", "fine"),
            Finding::new(Status::Fail, "b", "broken").fix("do x"),
        ];
        let r = render(&f);
        assert!(r.starts_with("bale doctor "));
        assert!(r.contains(": 1 FAIL, 0 WARN, 1 PASS, 0 INFO, 0 SKIP"));
        assert!(r.contains("\nPASS  a: fine\n"));
        assert!(r.contains("\nFAIL  b: broken\n      fix: do x\n"));
    }
}
