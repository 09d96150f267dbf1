//! bale: an S3-compatible object server built for fast random reads.

use bale::{buckets, http, layout, router, runtime, s3};

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use anyhow::Context;
use futures::channel::{mpsc, oneshot};

use bale::cfgfile::{self, ParseError};
use bale::config::{Command, ConfigCommand, DiskCommand, ServeArgs};

/// A `count-allocs` build counts heap allocations (see `bale::allocs`).
#[cfg(feature = "count-allocs")]
#[global_allocator]
static ALLOC: bale::allocs::Counting = bale::allocs::Counting;

fn main() {
    let parsed = match cfgfile::parse(std::env::args_os().collect()) {
        Ok(p) => p,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::File(line)) => {
            eprintln!("bale: error: {line}");
            std::process::exit(1);
        }
    };
    #[allow(unreachable_patterns)]
    let log_format = match &parsed.cli.command {
        Command::Serve(a) => a.log_format,
        _ => bale::logging::LogFormat::Text,
    };
    bale::logging::init(log_format);
    let result = match &parsed.cli.command {
        Command::Serve(args) => serve(args.clone()),
        Command::Doctor(args) => match bale::doctor::run(args) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
        },
        Command::Config(ConfigCommand::Check(args)) => {
            cfgfile::check(args, &parsed).map_err(anyhow::Error::msg)
        }
        Command::Warm(args) => bale::gateway::warm::run(args.clone()),
        Command::Disk(DiskCommand::Replace(args)) => disk_replace(args),
    };
    if let Err(e) = result {
        eprintln!("bale: error: {e:#}");
        std::process::exit(1);
    }
}

/// `bale disk replace`: the start's directory checks and rebuilds, then exit.
fn disk_replace(args: &ServeArgs) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    let dirs = args.data.len();
    let spd = args.shards_per_dir.unwrap_or(1);
    let p = layout::prepare(
        &args.data,
        spd,
        args.redundancy,
        args.rebuild_rate_mb.saturating_mul(1 << 20),
    )?;
    tracing::info!(
        "{}",
        layout::redundancy_line(p.redundancy, dirs, p.failed.len())
    );
    // Stripe files (erasure coding): rebuilt here, before exiting (a started bale rebuilds
    // them while serving instead).
    let mut stripe_files = 0u32;
    for place in &p.places {
        if let Some(st) = &place.stripes {
            stripe_files += bale_io::rebuild_stripe_files(st).map_err(|e| {
                anyhow::anyhow!(
                    "rebuilding the stripe files of shard {}: {e}",
                    place.shard_id
                )
            })?;
        }
    }
    if stripe_files > 0 {
        tracing::info!(files = stripe_files, "stripe files rebuilt");
    }
    if !p.failed.is_empty() {
        anyhow::bail!(
            "{} data directory(ies) still failed (nothing rebuilt there): {}",
            p.failed.len(),
            p.failed
                .iter()
                .map(|(d, why)| format!("{}: {why}", d.display()))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    tracing::info!("every shard copy is present and current");
    Ok(())
}

/// What `bale serve` prints for the person who started it: endpoint, data, keys.
fn print_banner(
    args: &ServeArgs,
    cores: usize,
    shards: usize,
    access_key: &str,
    secret_key: &str,
    defaulted: bool,
) {
    let data_dirs: Vec<String> = args.data.iter().map(|d| d.display().to_string()).collect();
    let (plain, tls) = runtime::listen_addrs(args);
    let urls: Vec<String> = plain
        .map(|a| format!("http://{a}"))
        .into_iter()
        .chain(tls.map(|a| format!("https://{a}")))
        .collect();
    println!(
        "bale {} serving S3 on {}",
        env!("CARGO_PKG_VERSION"),
        urls.join(" and ")
    );
    println!("  data:       {}", data_dirs.join(", "));
    println!("  cores:      {cores} (shards: {})", shards);
    println!("  region:     {}", args.region);
    if let Some(console) = args.console_listen {
        println!("  console:    http://{console}");
    }
    println!("  access key: {access_key}");
    println!(
        "  secret key: {secret_key}{}",
        if defaulted {
            "   (default: set --access-key/--secret-key or BALE_ACCESS_KEY/BALE_SECRET_KEY)"
        } else {
            ""
        }
    );
}

/// The GET /metrics endpoint (on --listen, and on --metrics-listen when given: that listener
/// starts here, before the cores, so a taken address fails the start).
fn metrics_endpoint(
    args: &ServeArgs,
    fast: &Option<Arc<bale::fast::FastPath>>,
    s3: &s3::BaleS3,
) -> anyhow::Result<Arc<bale::metrics::endpoint::Endpoint>> {
    bale::logging::set_log_requests(args.log_requests);
    let signer = fast
        .clone()
        .unwrap_or_else(|| Arc::new(bale::fast::FastPath { s3: s3.clone() }));
    let ep = Arc::new(bale::metrics::endpoint::Endpoint {
        public: args.metrics_public,
        token: args.metrics_token.clone(),
        signer,
        topo: s3.topo.clone(),
    });
    if let Some(addr) = args.metrics_listen {
        bale::metrics::endpoint::spawn_listener(addr, ep.clone())?;
        tracing::info!(listen = %addr, "metrics listener started");
    }
    Ok(ep)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    args.validate_observability().map_err(anyhow::Error::msg)?;
    let cpus = runtime::allowed_cpus();
    let cores = args.cores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let dirs = args.data.len();
    let shards_per_dir = args
        .shards_per_dir
        .unwrap_or_else(|| cores.div_ceil(dirs) as u32);
    let prepared = layout::prepare(
        &args.data,
        shards_per_dir,
        args.redundancy,
        args.rebuild_rate_mb.saturating_mul(1 << 20),
    )?;
    let redundancy_line = layout::redundancy_line(prepared.redundancy, dirs, prepared.failed.len());
    // Said once bale serves, next to the banner (a start that fails prints one line: its
    // error); a degraded set at WARN.
    let degraded = !prepared.failed.is_empty();
    let log_redundancy = |line: &str| {
        if degraded {
            tracing::warn!("{line}");
        } else {
            tracing::info!("{line}");
        }
    };
    let places = prepared.places;
    let buckets = Arc::new(buckets::Buckets::open(&prepared.live_dirs)?);
    runtime::probe_listen(args.listen)?;
    if let Some(t) = args.tls_listen {
        runtime::probe_listen(t)?;
    }
    bale::tls::start(args.tls_cert.as_deref(), args.tls_key.as_deref())?;
    // The console (if asked for) on its own thread; dropped (stopped) when serve returns. It
    // forwards plain HTTP to --listen, which a certificate without --tls-listen makes HTTPS.
    if args.console_listen.is_some() && args.tls_cert.is_some() && args.tls_listen.is_none() {
        anyhow::bail!(
            "--console-listen forwards to --listen over plain HTTP, but --tls-cert without \
             --tls-listen makes --listen HTTPS only: add --tls-listen for HTTPS"
        );
    }
    let _console = args
        .console_listen
        .map(|listen| {
            bale::console::start(bale::console::ConsoleConfig {
                listen,
                s3_listen: args.listen,
                region: args.region.clone(),
                idle_timeout: std::time::Duration::from_secs(args.idle_timeout_s),
            })
        })
        .transpose()?;

    let (access_key, secret_key, defaulted) = args.credentials();
    bale::metrics::init(cores);
    let mut inbox_tx = Vec::with_capacity(cores);
    let mut inbox_rx = Vec::with_capacity(cores);
    for _ in 0..cores {
        let (tx, rx) = mpsc::unbounded();
        inbox_tx.push(tx);
        inbox_rx.push(rx);
    }
    let topo = Arc::new(router::Topology::new(places.len(), cores, inbox_tx));
    let s3 = s3::BaleS3 {
        topo: topo.clone(),
        buckets,
        region: args.region.clone(),
    };
    let key_count = bale::keys::init(
        bale::keys::Key::root(&access_key, &secret_key),
        bale::keys::source_of(&args).map_err(anyhow::Error::msg)?,
    )
    .map_err(anyhow::Error::msg)?;
    bale::keys::reload_on_sighup().context("cannot install the SIGHUP handler")?;
    bale::sigcheck::init(&args.region);
    let fast = (!args.no_fast_path).then(|| Arc::new(bale::fast::FastPath { s3: s3.clone() }));
    let metrics = metrics_endpoint(&args, &fast, &s3)?;
    // Gateway mode (docs/gateway.md): GET/HEAD through the gateway's handlers, everything
    // else through its custom route to the upstream.
    let gateway = match &args.upstream {
        Some(_) => Some(bale::gateway::install(
            bale::gateway::GatewayConfig::from_args(&args).map_err(anyhow::Error::msg)?,
            places.len(),
        )?),
        None => None,
    };
    let s3_seed = gateway.as_ref().map(|_| s3.clone());
    let svc = {
        let mut b = match &gateway {
            Some(gw) => {
                let mut b = s3s::service::S3ServiceBuilder::new(bale::gateway::read::GatewayS3 {
                    inner: s3.clone(),
                    gw: gw.clone(),
                });
                b.set_route(bale::gateway::route::GatewayRoute {
                    inner: s3.clone(),
                    gw: gw.clone(),
                });
                b
            }
            None => s3s::service::S3ServiceBuilder::new(s3),
        };
        b.set_auth(bale::auth::KeysAuth);
        b.set_access(bale::auth::KeysAccess);
        let mut cfg = s3s::config::S3Config::default();
        cfg.xml_max_body_size = http::MAX_XML_BODY_BYTES;
        b.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
            cfg,
        ))));
        b.build()
    };
    // The index budget is the process's: each shard gets an even share (ADR 29).
    let index_memory_bytes = args
        .index_memory_bytes_per_shard(places.len())
        .map_err(anyhow::Error::msg)?;
    if index_memory_bytes > 0 {
        tracing::info!(
            index_memory_mb = args.index_memory_mb,
            shards = places.len(),
            per_shard_bytes = index_memory_bytes,
            "index memory budget: key blocks past a shard's share are paged to index.spill"
        );
    }
    let engine = bale_io::EngineConfig {
        index_memory_bytes,
        cache_bytes: args.cache_mb << 20,
        reserve_bytes: args.disk_reserve_mb << 20,
        volume_target_bytes: args.volume_target_mb << 20,
        ..Default::default()
    };

    // Installed before any core answers /health: a SIGTERM/SIGINT sent as soon as bale is
    // healthy must stop it cleanly (exit 0), not kill it with the default action.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("cannot install signal handlers")?;
    let drained = Arc::new(AtomicUsize::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut stops = Vec::with_capacity(cores);
    let mut threads = Vec::with_capacity(cores);
    for (core, inbox) in inbox_rx.into_iter().enumerate() {
        let (stop_tx, stop_rx) = oneshot::channel();
        stops.push(stop_tx);
        let setup = runtime::CoreSetup {
            core,
            cpu: if cpus.is_empty() {
                None
            } else {
                Some(cpus[core % cpus.len()])
            },
            listen: args.listen,
            places: topo
                .shards_of_core(core)
                .map(|s| places[s].clone())
                .collect(),
            engine: engine.clone(),
            topo: topo.clone(),
            handlers: http::Handlers {
                svc: svc.clone(),
                fast: fast.clone(),
                metrics: metrics.clone(),
            },
            inbox,
            shutdown: stop_rx,
            ready: ready_tx.clone(),
            drained: drained.clone(),
            args: args.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("bale-core-{core}"))
                .spawn(move || runtime::run_core(setup))
                .context("cannot start core thread")?,
        );
    }
    drop(ready_tx);
    let mut failure = None;
    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert("a core thread exited during start".into());
            }
        }
    }
    if let Some(e) = failure {
        for s in stops {
            let _ = s.send(());
        }
        for t in threads {
            let _ = t.join();
        }
        anyhow::bail!(e);
    }

    tracing::info!(listen = %args.listen, cores, shards = places.len(), "bale is serving");
    if let (Some(gw), Some(s3)) = (&gateway, s3_seed) {
        bale::gateway::local::seed_at_start(s3, places.len(), gw.cfg.shard_capacity_bytes);
    }
    log_redundancy(&redundancy_line);
    print_banner(
        &args,
        cores,
        places.len(),
        &access_key,
        &secret_key,
        defaulted,
    );
    if let Some(f) = bale::keys::source_of(&args).ok().flatten() {
        println!(
            "  keys:       {key_count} (root + {}; reloaded on SIGHUP)",
            f.path().display()
        );
    }

    // Wait for SIGTERM / SIGINT, then stop every core.
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "shutting down: finishing in-flight requests");
    }
    for s in stops {
        let _ = s.send(());
    }
    for t in threads {
        if t.join().is_err() {
            anyhow::bail!("a core thread panicked during shutdown");
        }
    }
    tracing::info!("bale stopped; all data durable");
    Ok(())
}
