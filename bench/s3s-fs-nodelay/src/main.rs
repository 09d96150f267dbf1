//! `s3s-fs-nodelay --host 127.0.0.1 --port P --access-key K --secret-key S ROOT`
//!
//! Same as the upstream s3s-fs 0.14.1 binary (FileSystem + SimpleAuth on hyper's auto
//! connection builder), except that every accepted socket gets TCP_NODELAY.

use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s_fs::FileSystem;
use tokio::net::TcpListener;

struct Opt {
    host: String,
    port: u16,
    access_key: Option<String>,
    secret_key: Option<String>,
    root: PathBuf,
}

fn parse() -> Opt {
    let mut o = Opt {
        host: "127.0.0.1".into(),
        port: 8014,
        access_key: None,
        secret_key: None,
        root: PathBuf::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--host" => o.host = val(),
            "--port" => o.port = val().parse().expect("port"),
            "--access-key" => o.access_key = Some(val()),
            "--secret-key" => o.secret_key = Some(val()),
            _ if a.starts_with("--") => panic!("unknown flag {a}"),
            _ => o.root = PathBuf::from(a),
        }
    }
    assert!(
        !o.root.as_os_str().is_empty(),
        "usage: s3s-fs-nodelay [--host H] [--port P] [--access-key K --secret-key S] ROOT"
    );
    o
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opt = parse();
    let fs = FileSystem::new(opt.root).map_err(|e| format!("s3s-fs: {e:?}"))?;
    let service = {
        let mut b = S3ServiceBuilder::new(fs);
        if let (Some(ak), Some(sk)) = (opt.access_key, opt.secret_key) {
            b.set_auth(SimpleAuth::from_single(ak, sk));
        }
        b.build()
    };
    let listener = TcpListener::bind((opt.host.as_str(), opt.port)).await?;
    eprintln!(
        "s3s-fs-nodelay listening on http://{}",
        listener.local_addr()?
    );
    let http = ConnBuilder::new(TokioExecutor::new());
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let socket = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => { eprintln!("accept: {e}"); continue; }
            },
            _ = ctrl_c.as_mut() => break,
        };
        socket.set_nodelay(true)?;
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    Ok(())
}
