//! The accept loop: axum's router served by hyper directly, so that a slow or idle client
//! cannot hold a connection: a header-read timeout (also closing idle keep-alive connections),
//! a body-idle timeout, a whole-request timeout, and a cap on open connections.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ApiError;
use crate::settings::HttpSettings;

/// How long a client may take, and how many may be connected at once.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header: Duration,
    pub body_idle: Duration,
    pub request: Duration,
    pub max_connections: usize,
}

impl Timeouts {
    pub fn from_settings(s: &HttpSettings) -> Timeouts {
        let secs = |n: u64| Duration::from_secs(n.max(1));
        Timeouts {
            header: secs(s.header_timeout_secs),
            body_idle: secs(s.body_idle_timeout_secs),
            request: secs(s.request_timeout_secs),
            max_connections: s.max_connections.max(1),
        }
    }
}

/// The answer to a connection over the cap, written before closing it.
fn busy() -> Vec<u8> {
    let body = "{\"error\":\"too many open connections; try again shortly\"}\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown`, then lets the requests in hand finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(timeouts, time_limits));
    let slots = Arc::new(Semaphore::new(timeouts.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "refusing a connection: {} open", timeouts.max_connections);
            tracker.spawn(async move {
                let mut stream = stream;
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(&busy())).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let token = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection closed: {e}");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The body-idle timeout (a body that sends nothing for that long ends in an error the
/// handler reports) and the whole-request timeout (408).
async fn time_limits(State(t): State<Timeouts>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let idle = t.body_idle;
    let stream = body.into_data_stream();
    let timed = futures::stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the request body sent nothing for {}s", idle.as_secs()),
                )),
                None,
            )),
        }
    });
    let request = Request::from_parts(parts, Body::from_stream(timed));
    match tokio::time::timeout(t.request, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {}s", t.request.as_secs()),
        )
        .into_response(),
    }
}
