//! Host-wide checks: what bale needs to run (kernel, io_uring, limits, clock) and the tuning
//! that moves random-read latency (governor, C-states, THP, isolated cores, IRQs, backlog,
//! busy polling).

use super::{read_trim, Finding, Status};

/// Oldest kernel bale's runtime is written for (io_uring features monoio uses).
const MIN_KERNEL: (u32, u32) = (5, 11);
/// From this kernel on, io_uring ring memory is charged to the memory cgroup, not to
/// RLIMIT_MEMLOCK.
const MEMCG_URING_KERNEL: (u32, u32) = (5, 12);
/// RLIMIT_MEMLOCK below which older kernels may refuse bale's rings, bytes.
const MIN_MEMLOCK_BYTES: u64 = 64 << 20;
/// Listen backlog bale asks for; the kernel caps it at net.core.somaxconn.
const LISTEN_BACKLOG: u64 = 4096;
/// Open files bale needs beyond its connections (volumes, journals, rings, listeners).
const NOFILE_HEADROOM: u64 = 1024;
/// A C-state whose exit latency is above this, µs, costs a visible share of a ~100 µs GET.
const MAX_CSTATE_LATENCY_US: u64 = 10;

fn kernel_version() -> Option<(u32, u32, String)> {
    // SAFETY: utsname is plain data that uname fills.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: uname NUL-terminates release.
    let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor, rel))
}

fn getrlimit(res: libc::__rlimit_resource_t) -> Option<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    if unsafe { libc::getrlimit(res, &mut r) } != 0 {
        return None;
    }
    Some((r.rlim_cur, r.rlim_max))
}

fn show_limit(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// What bale needs to start and serve at all.
pub fn runtime_checks(out: &mut Vec<Finding>, cores: usize, max_conns_per_core: usize) {
    let kernel = kernel_version();
    match &kernel {
        Some((maj, min, rel)) if (*maj, *min) >= MIN_KERNEL => {
            out.push(Finding::new(Status::Pass, "kernel", format!("Linux {rel}")))
        }
        Some((_, _, rel)) => out.push(
            Finding::new(
                Status::Fail,
                "kernel",
                format!(
                    "Linux {rel}: bale needs {}.{}+ for io_uring",
                    MIN_KERNEL.0, MIN_KERNEL.1
                ),
            )
            .fix("upgrade the kernel"),
        ),
        None => out.push(Finding::new(Status::Skip, "kernel", "uname failed")),
    }
    io_uring_checks(out);
    memlock_check(out, kernel.map(|(a, b, _)| (a, b)));
    let need = (cores * max_conns_per_core) as u64 + NOFILE_HEADROOM;
    match getrlimit(libc::RLIMIT_NOFILE) {
        Some((cur, _)) if cur >= need => out.push(Finding::new(
            Status::Pass,
            "open files",
            format!("RLIMIT_NOFILE {} (needs {need} for {cores} cores x {max_conns_per_core} connections)", show_limit(cur)),
        )),
        Some((cur, max)) => out.push(
            Finding::new(
                Status::Warn,
                "open files",
                format!(
                    "RLIMIT_NOFILE soft {} (hard {}): {cores} cores x {max_conns_per_core} connections need {need}; accepts fail with EMFILE first",
                    show_limit(cur),
                    show_limit(max)
                ),
            )
            .fix(format!("ulimit -n {need} (systemd: LimitNOFILE={need}; docker: --ulimit nofile={need})")),
        ),
        None => out.push(Finding::new(Status::Skip, "open files", "getrlimit failed")),
    }
    clock_checks(out);
}

fn io_uring_checks(out: &mut Vec<Finding>) {
    match read_trim("/proc/sys/kernel/io_uring_disabled") {
        Ok(v) if v == "0" => out.push(Finding::new(
            Status::Pass,
            "io_uring sysctl",
            "kernel.io_uring_disabled = 0",
        )),
        Ok(v) => out.push(
            Finding::new(
                Status::Warn,
                "io_uring sysctl",
                format!("kernel.io_uring_disabled = {v} (1: only the io_uring_group may use it; 2: nobody)"),
            )
            .fix("sysctl -w kernel.io_uring_disabled=0 (or add bale's user to kernel.io_uring_group)"),
        ),
        // Kernels before 6.6 have no such switch: io_uring is on.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => out.push(Finding::unreadable(
            "io_uring sysctl",
            "/proc/sys/kernel/io_uring_disabled",
            &e,
        )),
    }
    let ring = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(crate::runtime::RING_ENTRIES)
        .enable_timer()
        .build();
    match ring {
        Ok(rt) => {
            drop(rt);
            out.push(Finding::new(
                Status::Pass,
                "io_uring",
                format!(
                    "io_uring_setup works: a {}-entry ring (bale's size) was created",
                    crate::runtime::RING_ENTRIES
                ),
            ))
        }
        Err(e) => out.push(
            Finding::new(
                Status::Fail,
                "io_uring",
                format!("cannot create a {}-entry io_uring ring: {e}", crate::runtime::RING_ENTRIES),
            )
            .fix("enable io_uring: kernel 5.11+, sysctl kernel.io_uring_disabled=0, a container seccomp profile that allows io_uring_setup/io_uring_enter/io_uring_register (docker: --security-opt seccomp=unconfined), RLIMIT_MEMLOCK (ulimit -l unlimited) on kernels before 5.12"),
        ),
    }
}

fn memlock_check(out: &mut Vec<Finding>, kernel: Option<(u32, u32)>) {
    let Some((cur, _max)) = getrlimit(libc::RLIMIT_MEMLOCK) else {
        out.push(Finding::new(Status::Skip, "memlock", "getrlimit failed"));
        return;
    };
    let modern = kernel.is_some_and(|k| k >= MEMCG_URING_KERNEL);
    if cur == libc::RLIM_INFINITY || cur >= MIN_MEMLOCK_BYTES {
        out.push(Finding::new(
            Status::Pass,
            "memlock",
            format!("RLIMIT_MEMLOCK {}", show_limit(cur)),
        ));
    } else if modern {
        out.push(Finding::new(
            Status::Pass,
            "memlock",
            format!(
                "RLIMIT_MEMLOCK {cur} bytes; this kernel charges io_uring rings to the memory cgroup, not to memlock"
            ),
        ));
    } else {
        out.push(
            Finding::new(
                Status::Warn,
                "memlock",
                format!(
                    "RLIMIT_MEMLOCK {cur} bytes: kernels before 5.12 charge io_uring rings to it; several cores' rings may not fit"
                ),
            )
            .fix("ulimit -l unlimited (systemd: LimitMEMLOCK=infinity; docker: --ulimit memlock=-1)"),
        );
    }
}

fn clock_checks(out: &mut Vec<Finding>) {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // 2024-01-01: a clock before it is certainly wrong (SigV4 allows 15 minutes of skew).
    const SANE_AFTER_S: u64 = 1_704_067_200;
    if now_s < SANE_AFTER_S {
        out.push(
            Finding::new(
                Status::Fail,
                "clock",
                format!("CLOCK_REALTIME reads {now_s} s since 1970: before 2024, so wrong; every signed request would be refused as skewed"),
            )
            .fix("set the time and enable NTP (timedatectl set-ntp true, or chrony)"),
        );
        return;
    }
    // adjtimex with modes = 0 only reads the kernel's NTP state (allowed unprivileged).
    // SAFETY: timex is plain data that adjtimex fills.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        out.push(Finding::unreadable(
            "clock sync",
            "the kernel NTP state (adjtimex)",
            &std::io::Error::last_os_error(),
        ));
    } else if state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0 {
        out.push(
            Finding::new(
                Status::Warn,
                "clock sync",
                "the kernel says the clock is not synchronised (no NTP daemon disciplining it); SigV4 refuses requests more than 15 minutes off",
            )
            .fix("timedatectl set-ntp true (systemd-timesyncd) or install chrony"),
        );
    } else {
        out.push(Finding::new(
            Status::Pass,
            "clock sync",
            format!(
                "synchronised (kernel NTP state; max error {} µs)",
                tx.maxerror
            ),
        ));
    }
}

/// Settings that move latency; none stops bale from running.
pub fn tuning_checks(out: &mut Vec<Finding>) {
    governor_check(out);
    cstate_check(out);
    thp_check(out);
    isolation_check(out);
    irq_check(out);
    net_checks(out);
}

fn cpu_dirs() -> Vec<(usize, String)> {
    let mut v: Vec<(usize, String)> = std::fs::read_dir("/sys/devices/system/cpu")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let id = n.strip_prefix("cpu")?.parse::<usize>().ok()?;
                    Some((id, e.path().to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn governor_check(out: &mut Vec<Finding>) {
    let mut not_perf = Vec::new();
    let mut seen = 0;
    for (id, dir) in cpu_dirs() {
        if let Ok(g) = read_trim(&format!("{dir}/cpufreq/scaling_governor")) {
            seen += 1;
            if g != "performance" {
                not_perf.push(format!("cpu{id}={g}"));
            }
        }
    }
    if seen == 0 {
        out.push(Finding::new(
            Status::Skip,
            "cpu governor",
            "no cpufreq in /sys/devices/system/cpu/cpu*/cpufreq (a VM, or the hypervisor/firmware owns frequency)",
        ));
    } else if not_perf.is_empty() {
        out.push(Finding::new(
            Status::Pass,
            "cpu governor",
            format!("performance on all {seen} CPUs"),
        ));
    } else {
        not_perf.truncate(8);
        out.push(
            Finding::new(
                Status::Warn,
                "cpu governor",
                format!("not performance: {} (ramping up adds latency to the first requests after idle)", not_perf.join(" ")),
            )
            .fix("cpupower frequency-set -g performance"),
        );
    }
}

fn cstate_check(out: &mut Vec<Finding>) {
    let dir = "/sys/devices/system/cpu/cpu0/cpuidle";
    let Ok(rd) = std::fs::read_dir(dir) else {
        out.push(Finding::new(
            Status::Skip,
            "C-states",
            format!("no {dir} (no cpuidle driver: a VM, or idle=poll)"),
        ));
        return;
    };
    let mut deep = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        let p = p.to_string_lossy();
        let lat: u64 = read_trim(&format!("{p}/latency"))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let disabled = read_trim(&format!("{p}/disable")).is_ok_and(|v| v == "1");
        if lat > MAX_CSTATE_LATENCY_US && !disabled {
            let name = read_trim(&format!("{p}/name")).unwrap_or_default();
            deep.push(format!("{name} ({lat} µs)"));
        }
    }
    if deep.is_empty() {
        out.push(Finding::new(
            Status::Pass,
            "C-states",
            format!("no enabled idle state on cpu0 exits slower than {MAX_CSTATE_LATENCY_US} µs"),
        ));
    } else {
        out.push(
            Finding::new(
                Status::Warn,
                "C-states",
                format!("deep idle states enabled on cpu0: {}; a sleeping core pays this on the next request", deep.join(", ")),
            )
            .fix(format!("cpupower idle-set -D {MAX_CSTATE_LATENCY_US} (or boot with intel_idle.max_cstate=1 processor.max_cstate=1; or bale --spin-us)")),
        );
    }
}

fn thp_check(out: &mut Vec<Finding>) {
    let path = "/sys/kernel/mm/transparent_hugepage/enabled";
    match read_trim(path) {
        Ok(v) if v.contains("[always]") => out.push(
            Finding::new(
                Status::Warn,
                "THP",
                "transparent hugepages = always: khugepaged compaction can stall a core for milliseconds",
            )
            .fix(format!("echo madvise > {path} (boot: transparent_hugepage=madvise)")),
        ),
        Ok(v) => out.push(Finding::new(
            Status::Pass,
            "THP",
            format!("transparent hugepages: {v}"),
        )),
        Err(e) => out.push(Finding::unreadable("THP", path, &e)),
    }
}

fn isolation_check(out: &mut Vec<Finding>) {
    let iso = read_trim("/sys/devices/system/cpu/isolated").unwrap_or_default();
    let nohz = read_trim("/sys/devices/system/cpu/nohz_full").unwrap_or_default();
    let nohz = if nohz == "(null)" {
        String::new()
    } else {
        nohz
    };
    if iso.is_empty() && nohz.is_empty() {
        out.push(
            Finding::new(
                Status::Info,
                "isolated cores",
                "no isolcpus/nohz_full: bale's cores share the scheduler with everything else (fine unless p99.9 matters)",
            )
            .fix("boot with isolcpus=2-7 nohz_full=2-7 rcu_nocbs=2-7 and run bale under taskset -c 2-7"),
        );
    } else {
        out.push(Finding::new(
            Status::Pass,
            "isolated cores",
            format!("isolcpus: {iso:?}, nohz_full: {nohz:?} (run bale with taskset on these)"),
        ));
    }
}

fn irq_check(out: &mut Vec<Finding>) {
    let ints = match std::fs::read_to_string("/proc/interrupts") {
        Ok(s) => s,
        Err(e) => {
            out.push(Finding::unreadable("NVMe IRQs", "/proc/interrupts", &e));
            return;
        }
    };
    let irqs: Vec<&str> = ints
        .lines()
        .filter(|l| l.contains("nvme"))
        .filter_map(|l| l.split(':').next().map(str::trim))
        .collect();
    if irqs.is_empty() {
        out.push(Finding::new(
            Status::Info,
            "NVMe IRQs",
            "no nvme interrupts in /proc/interrupts (no NVMe device, or it is virtual)",
        ));
        return;
    }
    let mut maps = Vec::new();
    for irq in irqs.iter().take(16) {
        match read_trim(&format!("/proc/irq/{irq}/effective_affinity_list"))
            .or_else(|_| read_trim(&format!("/proc/irq/{irq}/smp_affinity_list")))
        {
            Ok(cpus) => maps.push(format!("{irq}->{cpus}")),
            Err(e) => {
                out.push(Finding::unreadable(
                    "NVMe IRQs",
                    &format!("/proc/irq/{irq}/smp_affinity_list"),
                    &e,
                ));
                return;
            }
        }
    }
    out.push(
        Finding::new(
            Status::Info,
            "NVMe IRQs",
            format!("{} NVMe queue IRQs (irq->cpus): {}; a completion is cheapest on the core that submitted it", irqs.len(), maps.join(" ")),
        )
        .fix("keep the default per-CPU queue mapping (managed IRQs); stop irqbalance from moving them (IRQBALANCE_BANNED_CPULIST=<bale's cores>)"),
    );
}

fn net_checks(out: &mut Vec<Finding>) {
    let path = "/proc/sys/net/core/somaxconn";
    match read_trim(path).map(|v| v.parse::<u64>()) {
        Ok(Ok(v)) if v >= LISTEN_BACKLOG => out.push(Finding::new(
            Status::Pass,
            "somaxconn",
            format!("net.core.somaxconn = {v} (bale asks for {LISTEN_BACKLOG})"),
        )),
        Ok(Ok(v)) => out.push(
            Finding::new(
                Status::Warn,
                "somaxconn",
                format!("net.core.somaxconn = {v}: caps bale's listen backlog of {LISTEN_BACKLOG}; a burst of connects overflows it"),
            )
            .fix(format!("sysctl -w net.core.somaxconn={LISTEN_BACKLOG}")),
        ),
        Ok(Err(_)) => out.push(Finding::new(Status::Skip, "somaxconn", format!("{path}: not a number"))),
        Err(e) => out.push(Finding::unreadable("somaxconn", path, &e)),
    }
    let bp = read_trim("/proc/sys/net/core/busy_poll");
    let br = read_trim("/proc/sys/net/core/busy_read");
    match (bp, br) {
        (Ok(p), Ok(r)) => out.push(
            Finding::new(
                Status::Info,
                "busy polling",
                format!("net.core.busy_poll = {p} µs, busy_read = {r} µs (0 = off; helps only on a real NIC, not loopback)"),
            )
            .fix("sysctl -w net.core.busy_poll=50 net.core.busy_read=50 (measure: it burns CPU)"),
        ),
        (Err(e), _) | (_, Err(e)) => {
            out.push(Finding::unreadable("busy polling", "/proc/sys/net/core/busy_{poll,read}", &e))
        }
    }
}
