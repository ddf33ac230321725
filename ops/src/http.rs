//! Every role's HTTP endpoints, on axum:
//!
//! - `/metrics`: Prometheus text;
//! - `/healthz`: 200 while the process serves requests (liveness);
//! - `/readyz`: 200 once the role can do its job, else 503 with the reason (readiness:
//!   the agent's socket accepts and its spool is open; the consumer has joined its
//!   group; the bridge's routes run; the auditor has caught up with its audit topic);
//! - the auditor adds its dashboard and JSON API ([`crate::dashboard::route`]).
//!
//! [`bind`] happens before a role starts: an address in use stops start-up with an
//! error instead of a role that runs without its endpoints.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

/// What a handler answers: status, content type, body.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn ok(content_type: &'static str, body: String) -> Response {
        Response {
            status: 200,
            content_type,
            body,
        }
    }

    pub fn bad_request(why: String) -> Response {
        Response {
            status: 400,
            content_type: "text/plain",
            body: why,
        }
    }

    pub fn not_found() -> Response {
        Response {
            status: 404,
            content_type: "text/plain",
            body: "not found\n".into(),
        }
    }

    fn internal_error() -> Response {
        Response {
            status: 500,
            content_type: "text/plain",
            body: "internal error\n".into(),
        }
    }
}

impl IntoResponse for Response {
    fn into_response(self) -> axum::response::Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, self.content_type)],
            self.body,
        )
            .into_response()
    }
}

pub const PROMETHEUS: &str = evd_schemas::metrics::CONTENT_TYPE;

/// Renders the role's metrics.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;
/// Whether the role is ready, or why not.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Binds `addr` (`host:port`); the error names the address.
pub async fn bind(addr: &str) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("http listener {addr}: {e}")))
}

/// `/metrics`, `/healthz` and `/readyz`; anything else is 404.
pub fn role_router(metrics: RenderMetrics, ready: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { guarded(move || Response::ok(PROMETHEUS, metrics())) }
            }),
        )
        .route(
            "/healthz",
            get(|| async { Response::ok("text/plain", "ok\n".into()) }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready() {
                        Ok(()) => Response::ok("text/plain", "ready\n".into()),
                        Err(why) => Response {
                            status: 503,
                            content_type: "text/plain",
                            body: format!("not ready: {why}\n"),
                        },
                    }
                }
            }),
        )
        .fallback(|| async { Response::not_found() })
}

/// A role router whose other paths go to `handler(path and query)` (the dashboard).
pub fn with_pages(
    router: Router,
    handler: impl Fn(&str) -> Response + Send + Sync + 'static,
) -> Router {
    let handler = Arc::new(handler);
    router.fallback(move |uri: Uri| {
        let handler = handler.clone();
        async move {
            let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
            guarded(move || handler(&path))
        }
    })
}

/// A handler that panics answers 500; the server and other requests go on.
fn guarded(handler: impl FnOnce() -> Response) -> Response {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler))
        .unwrap_or_else(|_| Response::internal_error())
}

/// What a role's `/metrics` and `/readyz` answer from.
pub trait RoleStatus: Send + Sync + 'static {
    fn render(&self) -> String;
    fn readiness(&self) -> Result<(), String>;
}

impl RoleStatus for evd_producer::metrics::Metrics {
    fn render(&self) -> String {
        evd_producer::metrics::Metrics::render(self)
    }
    fn readiness(&self) -> Result<(), String> {
        evd_producer::metrics::Metrics::readiness(self)
    }
}

impl RoleStatus for evd_consumer::metrics::Metrics {
    fn render(&self) -> String {
        evd_consumer::metrics::Metrics::render(self)
    }
    fn readiness(&self) -> Result<(), String> {
        evd_consumer::metrics::Metrics::readiness(self)
    }
}

impl RoleStatus for evd_bridge::Metrics {
    fn render(&self) -> String {
        evd_bridge::Metrics::render(self)
    }
    fn readiness(&self) -> Result<(), String> {
        evd_bridge::Metrics::readiness(self)
    }
}

/// [`start`] with a role's [`role_router`] over `status`.
pub async fn start_role<S: RoleStatus>(
    addr: Option<&str>,
    status: Arc<S>,
) -> Result<(), std::io::Error> {
    let for_ready = status.clone();
    start(addr, || {
        role_router(
            Arc::new(move || status.render()),
            Arc::new(move || for_ready.readiness()),
        )
    })
    .await
}

/// Binds `addr` (when the config names one) and serves `router` there on the current
/// runtime. A failed bind is returned: the role must not start without it.
pub async fn start(
    addr: Option<&str>,
    router: impl FnOnce() -> Router,
) -> Result<(), std::io::Error> {
    if let Some(addr) = addr {
        let listener = bind(addr).await?;
        tracing::info!(%addr, "http: /metrics /healthz /readyz");
        tokio::spawn(serve(listener, router()));
    }
    Ok(())
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router) {
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "http server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(router: Router) -> String {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve(listener, router));
        addr
    }

    async fn get(addr: &str, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    fn router(ready: bool) -> Router {
        role_router(
            Arc::new(|| "evd_x_total 1\n".to_string()),
            Arc::new(move || {
                if ready {
                    Ok(())
                } else {
                    Err("spool not open".into())
                }
            }),
        )
    }

    #[tokio::test]
    async fn health_readiness_metrics_and_404() {
        let addr = start(router(false)).await;
        assert!(get(&addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let r = get(&addr, "/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.ends_with("not ready: spool not open\n"),
            "{r}"
        );
        let r = get(&addr, "/metrics").await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("evd_x_total 1\n"),
            "{r}"
        );
        assert!(get(&addr, "/nope").await.starts_with("HTTP/1.1 404"));
        let addr = start(router(true)).await;
        assert!(get(&addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_panicking_page_answers_500_and_the_server_goes_on() {
        let pages = with_pages(router(true), |path| {
            assert!(!path.starts_with("/boom"), "a handler bug");
            Response::ok("text/plain", format!("page {path}"))
        });
        let addr = start(pages).await;
        let r = get(&addr, "/boom").await;
        assert!(r.starts_with("HTTP/1.1 500"), "{r}");
        assert!(
            get(&addr, "/hour/x?y=1")
                .await
                .ends_with("page /hour/x?y=1")
        );
        assert!(get(&addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn an_address_in_use_is_an_error() {
        let first = bind("127.0.0.1:0").await.unwrap();
        let addr = first.local_addr().unwrap().to_string();
        let err = bind(&addr).await.unwrap_err();
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
