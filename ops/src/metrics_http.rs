//! A minimal HTTP/1.1 server for GET requests: `/metrics` for every process, and the
//! auditor's dashboard and JSON API. One response per connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    pub fn not_found() -> Response {
        Response {
            status: 404,
            content_type: "text/plain",
            body: "not found\n".into(),
        }
    }
}

pub const PROMETHEUS: &str = "text/plain; version=0.0.4";

/// Serves `render()` (Prometheus text) on `addr` for any path until the task is dropped.
pub async fn serve(addr: String, render: impl Fn() -> String + Send + Sync + 'static) {
    serve_routes(addr, move |_| Response::ok(PROMETHEUS, render())).await
}

/// Serves `handler(path)` on `addr` until the task is dropped.
pub async fn serve_routes(
    addr: String,
    handler: impl Fn(&str) -> Response + Send + Sync + 'static,
) {
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("evd: http listener {addr}: {e}");
            return;
        }
    };
    let handler = Arc::new(handler);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let response = handler(&path);
            let reason = if response.status == 200 {
                "OK"
            } else {
                "Not Found"
            };
            let head = format!(
                "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                response.status,
                response.content_type,
                response.body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(response.body.as_bytes()).await;
        });
    }
}
