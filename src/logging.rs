//! Logs: `tracing` to stderr, text or JSON (`--log-format`), ANSI colours only on a terminal,
//! and the request id of the request being served on every line logged while serving it.
//!
//! The id travels in a thread-local that a request's future sets while it is polled
//! (`with_request_id`): a few plain stores per poll, no span, no allocation. The formatter
//! adds it to lines logged inside that poll (`request_id=...` in text, a `request_id` field in
//! JSON); work handed to another core (`router::on_shard`) or to a spawned body task carries
//! it along.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub type RequestId = [u8; 16];

thread_local! {
    static CURRENT: Cell<Option<RequestId>> = const { Cell::new(None) };
}

static LOG_REQUESTS: AtomicBool = AtomicBool::new(false);

/// `--log-requests`: one info line per request (set once at start).
pub fn set_log_requests(on: bool) {
    LOG_REQUESTS.store(on, Relaxed);
}

#[inline]
pub fn log_requests() -> bool {
    LOG_REQUESTS.load(Relaxed)
}

/// The id of the request being served by this thread right now, if any.
#[inline]
pub fn current_request_id() -> Option<RequestId> {
    CURRENT.with(Cell::get)
}

pin_project_lite::pin_project! {
    /// A future that is "serving request `id`" while it is polled.
    pub struct WithRequestId<F> {
        #[pin]
        inner: F,
        id: Option<RequestId>,
    }
}

impl<F: Future> Future for WithRequestId<F> {
    type Output = F::Output;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let prev = CURRENT.with(|c| c.replace(*this.id));
        let r = this.inner.poll(cx);
        CURRENT.with(|c| c.set(prev));
        r
    }
}

/// Runs `f` as part of request `id` (None: as part of no request).
pub fn with_request_id<F: Future>(id: Option<RequestId>, f: F) -> WithRequestId<F> {
    WithRequestId { inner: f, id }
}

/// Wraps a formatter: lines logged while a request is served get its id.
struct RequestIdFormat<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for RequestIdFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(id) = current_request_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let id = std::str::from_utf8(&id).unwrap_or("?");
        // Rare (a line logged while serving): format into a buffer, then add the id.
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        if self.json {
            match body.strip_suffix('}') {
                Some(head) => writeln!(writer, "{head},\"request_id\":\"{id}\"}}"),
                None => writeln!(writer, "{body}"),
            }
        } else {
            writeln!(writer, "{body} request_id={id}")
        }
    }
}

/// Installs the global subscriber: RUST_LOG filter (default `info,s3s=off`), stderr.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,s3s=off".into());
    let ansi = std::io::stderr().is_terminal();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => {
            let inner = tracing_subscriber::fmt::format().with_ansi(ansi);
            b.event_format(RequestIdFormat { inner, json: false })
                .init()
        }
        LogFormat::Json => {
            let inner = tracing_subscriber::fmt::format().json().flatten_event(true);
            b.fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(RequestIdFormat { inner, json: true })
                .init()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(json: bool, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let b = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false);
        let sub: Box<dyn Subscriber + Send + Sync> = if json {
            let inner = tracing_subscriber::fmt::format().json().flatten_event(true);
            Box::new(
                b.fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(RequestIdFormat { inner, json })
                    .finish(),
            )
        } else {
            let inner = tracing_subscriber::fmt::format().with_ansi(false);
            Box::new(b.event_format(RequestIdFormat { inner, json }).finish())
        };
        tracing::subscriber::with_default(sub, f);
        let v = buf.0.lock().unwrap().clone();
        String::from_utf8(v).unwrap()
    }

    /// Polls a future that logs once, as request `id`.
    fn in_request(id: &[u8; 16]) {
        let fut = with_request_id(Some(*id), async { tracing::warn!(n = 1, "inside") });
        futures::executor::block_on(fut);
        tracing::warn!("outside");
    }

    #[test]
    fn lines_logged_while_serving_carry_the_request_id() {
        let text = logged(false, || in_request(b"0123456789ABCDEF"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("inside n=1 request_id=0123456789ABCDEF"),
            "{text}"
        );
        assert!(!lines[1].contains("request_id"), "{text}");

        let json = logged(true, || in_request(b"FEDCBA9876543210"));
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["request_id"], "FEDCBA9876543210");
        assert_eq!(lines[0]["message"], "inside");
        assert_eq!(lines[0]["level"], "WARN");
        assert!(lines[1].get("request_id").is_none());
    }
}
