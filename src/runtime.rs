//! The per-core runtime: one pinned thread per core, each a monoio io_uring runtime with its
//! own SO_REUSEPORT listener, its own shards and its own inbox for work from other cores.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bale_io::{EngineConfig, Shard};
use futures::channel::{mpsc, oneshot};
use futures::FutureExt;

use crate::config::ServeArgs;
use crate::conns::{Admit, ConnTable};
use crate::http::{serve_conn, ConnLimits};
use crate::layout::ShardPlace;
use crate::router::{self, Inbox, Topology};

/// How often a core looks for k sealed volumes of a shard to encode into a stripe (ADR 19).
const STRIPE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// io_uring submission queue entries per core.
pub const RING_ENTRIES: u32 = 1024;

pub struct CoreSetup {
    pub core: usize,
    pub cpu: Option<usize>,
    pub listen: SocketAddr,
    pub places: Vec<ShardPlace>,
    pub engine: EngineConfig,
    pub topo: Arc<Topology>,
    pub handlers: crate::http::Handlers,
    pub inbox: mpsc::UnboundedReceiver<Inbox>,
    pub shutdown: oneshot::Receiver<()>,
    pub ready: std::sync::mpsc::Sender<Result<(), String>>,
    pub drained: Arc<AtomicUsize>,
    pub args: ServeArgs,
}

/// CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect()
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: as above; pins the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(cpu, "could not pin thread to cpu");
        }
    }
}

/// Fails fast with a clear message if the address is taken (a plain bind, without
/// SO_REUSEPORT, so another process's reuseport listener is also detected).
pub fn probe_listen(addr: SocketAddr) -> anyhow::Result<()> {
    // A process killed a moment ago can hold its listeners for a few ms more while the kernel
    // tears down its io_uring rings: retry for up to a second before calling the port taken.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => return Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                bail!("cannot listen on {addr}: the address is already in use (is another server running? pick another with --listen)")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}")),
        }
    }
}

pub fn run_core(setup: CoreSetup) {
    if let Some(cpu) = setup.cpu {
        pin_to(cpu);
    }
    // COOP_TASKRUN (Linux 5.19+): a completion that needs the core's task context (a socket
    // receive, an O_DIRECT read finished in the disk's interrupt) waits for the core's next
    // `io_uring_enter` instead of interrupting it with an IPI; the core enters the kernel on
    // every turn of its loop anyway (docs/adr/0024). An older kernel refuses the flag: the
    // ring is then made without it.
    // `BALE_RING_COOP_TASKRUN=0` makes the ring without it (for A/B measurements,
    // docs/adr/0026).
    let mut coop = io_uring::IoUring::builder();
    if coop_taskrun_wanted() {
        coop.setup_coop_taskrun();
    }
    let rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(RING_ENTRIES)
        .uring_builder(coop)
        .enable_timer()
        .build()
        .or_else(|e| {
            tracing::debug!(error = %e, "io_uring without COOP_TASKRUN (older kernel)");
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(RING_ENTRIES)
                .enable_timer()
                .build()
        });
    let mut rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            let _ = setup.ready.send(Err(format!(
                "cannot start an io_uring runtime on core {} ({e}); bale needs Linux 5.11+ with io_uring enabled (check /proc/sys/kernel/io_uring_disabled and container seccomp profiles)",
                setup.core
            )));
            return;
        }
    };
    rt.block_on(core_main(setup));
}

/// Whether the rings are made with `IORING_SETUP_COOP_TASKRUN`: yes unless the environment
/// variable `BALE_RING_COOP_TASKRUN` is `0`, `off` or `false` (read once per core at start).
pub fn coop_taskrun_wanted() -> bool {
    coop_taskrun_from(std::env::var("BALE_RING_COOP_TASKRUN").ok().as_deref())
}

fn coop_taskrun_from(v: Option<&str>) -> bool {
    !matches!(
        v.map(str::trim).map(str::to_ascii_lowercase).as_deref(),
        Some("0" | "off" | "false" | "no")
    )
}

/// The core's background tasks: the spinner (adaptive `--poll-us` or fixed `--spin-us`),
/// compaction and scrub passes over its shards at their intervals, and (`striped`) the
/// stripe encoding of sealed volumes.
fn spawn_background(core: usize, args: &ServeArgs, striped: bool) {
    let poll = crate::spin::Mode::from_flags(args.spin_us, args.poll_us);
    if poll != crate::spin::Mode::Off {
        monoio::spawn(crate::spin::run(poll));
    }

    if args.compact_interval_s > 0 {
        let ratio = args.compact_ratio;
        let every = Duration::from_secs(args.compact_interval_s);
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(every).await;
                for s in router::local_shards() {
                    match s.compact(ratio).await {
                        Ok(st) if st.volumes_compacted > 0 => {
                            tracing::info!(
                                core,
                                volumes = st.volumes_compacted,
                                reclaimed_bytes = st.bytes_reclaimed,
                                "compaction pass"
                            )
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(core, error = %e, "compaction failed"),
                    }
                }
            }
        });
    }

    // Erasure coding (ADR 19): sealed volumes become stripes once k of a shard are ready
    // (a no-op pass without erasure coding or with fewer ready).
    if striped {
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(STRIPE_CHECK_EVERY).await;
                for s in router::local_shards() {
                    if let Err(e) = s.encode_stripes().await {
                        tracing::warn!(core, error = %e, "stripe encoding failed (retried later)");
                    }
                }
            }
        });
    }

    if args.scrub_interval_s > 0 {
        let every = Duration::from_secs(args.scrub_interval_s);
        let rate = args.scrub_rate_mb << 20;
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(every).await;
                for s in router::local_shards() {
                    match s.scrub(rate).await {
                        Ok(st) if st.corrupt_objects > 0 || st.bad_stripes > 0 => {
                            tracing::error!(
                                core,
                                checked = st.objects_checked,
                                corrupt = st.corrupt_objects,
                                stripes_checked = st.stripes_checked,
                                bad_stripes = st.bad_stripes,
                                "scrub found corrupt objects or stripes"
                            )
                        }
                        Ok(st) => tracing::info!(
                            core,
                            checked = st.objects_checked,
                            stripes_checked = st.stripes_checked,
                            bytes = st.bytes_checked,
                            "scrub pass clean"
                        ),
                        Err(e) => tracing::warn!(core, error = %e, "scrub failed"),
                    }
                }
            }
        });
    }
}

/// Which addresses this process serves plain HTTP and HTTPS on: with a certificate and no
/// --tls-listen, --listen is HTTPS only; with --tls-listen, both.
pub fn listen_addrs(args: &ServeArgs) -> (Option<SocketAddr>, Option<SocketAddr>) {
    match (&args.tls_cert, args.tls_listen) {
        (None, _) => (Some(args.listen), None),
        (Some(_), None) => (None, Some(args.listen)),
        (Some(_), Some(t)) => (Some(args.listen), Some(t)),
    }
}

/// What a core's accept loops share: the handlers, the limits and the connection table.
struct Acceptor {
    core: usize,
    handlers: crate::http::Handlers,
    limits: ConnLimits,
    conn_stop: futures::future::Shared<oneshot::Receiver<()>>,
    table: Rc<RefCell<ConnTable>>,
}

impl Acceptor {
    /// Accepts on one listener until shutdown; `tls` makes it an HTTPS listener.
    async fn accept_loop(
        &self,
        listener: monoio::net::TcpListener,
        mut tls: Option<crate::tls::CoreTls>,
        shutdown: futures::future::Shared<oneshot::Receiver<()>>,
    ) {
        let mut shutdown = shutdown.fuse();
        loop {
            let accepted = {
                let mut acc = std::pin::pin!(listener.accept().fuse());
                futures::select_biased! {
                    _ = shutdown => None,
                    r = acc => Some(r),
                }
            };
            let Some(r) = accepted else { break };
            match r {
                Ok((stream, _peer)) => {
                    let admitted = self.table.borrow_mut().admit(self.core);
                    let slot = match admitted {
                        Admit::Admitted(s) | Admit::Evicted(s) => s,
                        Admit::Refused => {
                            crate::metrics::connection_refused();
                            drop(stream);
                            continue;
                        }
                    };
                    let (h, l, stop, table) = (
                        self.handlers.clone(),
                        self.limits,
                        self.conn_stop.clone(),
                        self.table.clone(),
                    );
                    match tls.as_mut() {
                        None => spawn_guarded(serve_conn(stream, h, l, stop, table, slot)),
                        Some(t) => spawn_guarded(crate::tls::serve_tls_conn(
                            stream,
                            t.acceptor(),
                            h,
                            l,
                            stop,
                            table,
                            slot,
                        )),
                    }
                }
                Err(e) => {
                    tracing::warn!(core = self.core, error = %e, "accept failed");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        drop(listener);
    }
}

/// Runs a connection's task; a panic in it is logged and contained (the core keeps serving).
///
/// Built from combinators, not an `async` block: an `async move` block holding `fut` keeps
/// both its captured `fut` and the `CatchUnwind` it awaits in its state, so every connection's
/// task was twice the connection future's size (43 KiB per connection, measured with 3,000
/// partial heads; the future itself is ~22 KiB, most of it the fast path's answer).
fn spawn_guarded<F: std::future::Future<Output = ()> + 'static>(fut: F) {
    monoio::spawn(std::panic::AssertUnwindSafe(fut).catch_unwind().map(|r| {
        if r.is_err() {
            tracing::error!("panic in a connection task; connection dropped, core keeps serving");
        }
    }));
}

async fn core_main(setup: CoreSetup) {
    let CoreSetup {
        core,
        places,
        engine,
        topo,
        handlers,
        inbox,
        shutdown,
        ready,
        drained,
        args,
        ..
    } = setup;
    // Open this core's shards.
    let mut shards: Vec<Option<Rc<Shard>>> = vec![None; topo.shard_count];
    for p in &places {
        let opened = match &p.stripes {
            Some(st) => {
                Shard::open_striped(&p.copies, p.copies_wanted, st.clone(), engine.clone()).await
            }
            None => Shard::open_copies(&p.copies, p.copies_wanted, engine.clone()).await,
        };
        match opened {
            Ok(s) => {
                let st = s.stats();
                tracing::info!(core, shard = p.shard_id, dir = %p.dir.display(), objects = st.objects, "shard open");
                shards[p.shard_id] = Some(s)
            }
            Err(e) => {
                let _ = ready.send(Err(format!(
                    "cannot open shard {} in {}: {e}",
                    p.shard_id,
                    p.dir.display()
                )));
                return;
            }
        }
    }
    router::install_local(core, shards);
    crate::metrics::bind_core(core);
    monoio::spawn(router::serve_inbox(inbox));

    let (plain_addr, tls_addr) = listen_addrs(&args);
    let listen_on = |addr: SocketAddr| {
        let opts = monoio::net::ListenerOpts::new()
            .reuse_port(true)
            .reuse_addr(true)
            .backlog(4096);
        monoio::net::TcpListener::bind_with_config(addr, &opts)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let plain = match plain_addr.map(listen_on).transpose() {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let tls = match tls_addr.map(listen_on).transpose() {
        Ok(l) => l.map(|l| (l, crate::tls::CoreTls::new())),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let tls = match tls {
        Some((l, Some(t))) => Some((l, t)),
        Some((_, None)) => {
            let _ = ready.send(Err("TLS listener without a loaded certificate".into()));
            return;
        }
        None => None,
    };
    let _ = ready.send(Ok(()));

    spawn_background(core, &args, places.iter().any(|p| p.stripes.is_some()));
    let limits = ConnLimits {
        header_timeout: Duration::from_secs(args.header_timeout_s),
        idle_timeout: Duration::from_secs(args.idle_timeout_s),
        max_inflight: args.max_inflight_per_core,
    };
    let table = Rc::new(RefCell::new(ConnTable::new(args.max_connections_per_core)));
    let (conn_stop_tx, conn_stop_rx) = oneshot::channel::<()>();
    let acc = Acceptor {
        core,
        handlers,
        limits,
        conn_stop: conn_stop_rx.shared(),
        table: table.clone(),
    };
    let shutdown = shutdown.shared();
    futures::join!(
        async {
            if let Some(l) = plain {
                acc.accept_loop(l, None, shutdown.clone()).await
            }
        },
        async {
            if let Some((l, t)) = tls {
                acc.accept_loop(l, Some(t), shutdown.clone()).await
            }
        },
    );
    // Ask every connection to finish its current request, then wait (bounded).
    let _ = conn_stop_tx.send(());
    let deadline = std::time::Instant::now() + Duration::from_secs(args.shutdown_timeout_s);
    while table.borrow().live() > 0 && std::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    if table.borrow().live() > 0 {
        tracing::warn!(
            core,
            connections = table.borrow().live(),
            "shutdown timeout: closing remaining connections"
        );
    }
    // Wait until every core drained, since other cores may still route work to our shards.
    drained.fetch_add(1, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(args.shutdown_timeout_s);
    while drained.load(Ordering::SeqCst) < topo.core_count && std::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    for s in router::local_shards() {
        if let Err(e) = s.close().await {
            tracing::error!(core, error = %e, "shard close failed");
        }
    }
    router::clear_local();
    tracing::info!(core, "core stopped");
}

#[cfg(test)]
mod tests {
    use super::coop_taskrun_from;

    #[test]
    fn coop_taskrun_is_on_unless_turned_off() {
        assert!(coop_taskrun_from(None));
        assert!(coop_taskrun_from(Some("1")));
        assert!(coop_taskrun_from(Some("on")));
        assert!(coop_taskrun_from(Some("")));
        for off in ["0", "off", "OFF", "false", "no", " 0 "] {
            assert!(!coop_taskrun_from(Some(off)), "{off:?}");
        }
    }
}
