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
}

pub const PROMETHEUS: &str = "text/plain; version=0.0.4";

/// Serves `render()` (Prometheus text) on `addr` for any path until the task is dropped.
pub async fn serve(addr: String, render: impl Fn() -> String + Send + Sync + 'static) {
    serve_routes(addr, move |_| Response::ok(PROMETHEUS, render())).await
}

/// Reads a request head (up to the blank line, 4 KiB, end of stream or 2 s): a
/// client may send it in several writes.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while head.len() < 4096 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    head
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
            let head = read_head(&mut stream).await;
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            // A handler that panics answers 500; the server and other requests go on.
            let response =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&path)))
                    .unwrap_or_else(|_| Response {
                        status: 500,
                        content_type: "text/plain",
                        body: "internal error\n".into(),
                    });
            let reason = match response.status {
                200 => "OK",
                400 => "Bad Request",
                404 => "Not Found",
                _ => "Internal Server Error",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `handler` on a free port; returns its address once it accepts.
    async fn start(handler: impl Fn(&str) -> Response + Send + Sync + 'static) -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        tokio::spawn(serve_routes(addr.clone(), handler));
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        addr
    }

    async fn get(addr: &str, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn a_request_head_sent_in_pieces_is_read_whole() {
        let addr = start(|path| Response::ok("text/plain", format!("path {path}"))).await;
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /api/").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(b"hours HTTP/1.0\r\n\r\n").await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.ends_with("path /api/hours"), "{response}");
    }

    /// A handler that panics answers 500 and the server goes on answering.
    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
        let addr = start(|path| {
            assert!(path != "/boom", "a handler bug");
            Response::ok("text/plain", "fine".into())
        })
        .await;
        let response = get(&addr, "/boom").await;
        assert!(
            response.starts_with("HTTP/1.1 500 Internal Server Error"),
            "{response}"
        );
        assert!(get(&addr, "/").await.ends_with("fine"));
    }
}
