//! The kubelet's health endpoint (http://127.0.0.1:10248/healthz), which pictl
//! probes on every node. `--kubelet-arg healthz-port=N` / `healthz-bind-address=A`
//! move it, as they do for the real kubelet (host-side tests need that).

use crate::api::text_resp;
use crate::config::Settings;
use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;

pub async fn serve(settings: &Settings) -> Result<()> {
    let port: u16 = match settings.component_arg("kubelet-arg", "healthz-port") {
        Some(p) => p
            .parse()
            .with_context(|| format!("invalid kubelet-arg healthz-port={p}"))?,
        None => 10248,
    };
    let addr = settings
        .component_arg("kubelet-arg", "healthz-bind-address")
        .unwrap_or_else(|| "127.0.0.1".into());
    if port == 0 {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind((addr.as_str(), port))
        .await
        .with_context(|| format!("kubelet healthz: listen tcp {addr}:{port}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(match req.uri().path() {
                            "/healthz" => text_resp(200, "ok"),
                            _ => text_resp(404, "404 page not found\n"),
                        })
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}
