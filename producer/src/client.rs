//! The client side of the socket protocol (docs/wire-format.md §4), as a library:
//! `evd send`, the benches and the tests' load generators use it, and a Rust service
//! can too.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use evd_producer::client::{Response, send_lines};
//! let lines = &b"{\"type\":\"PageView\",\"ts\":1795000000000,\"event_id\":\"e1\",\"user_id\":\"u1\",\"url\":\"/\"}\n"[..];
//! send_lines("/run/evd/agent.sock".as_ref(), lines, |n, answer| match answer {
//!     Response::Ok(seq) => println!("line {n} is durable as seq {seq}"),
//!     Response::Error { retryable: true, .. } => println!("line {n}: send it again later"),
//!     Response::Error { error, .. } => println!("line {n} refused for good: {error}"),
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! A connection that ends before every line has its answer (agent restart) returns
//! an error: resend the lines without an answer, with the same `event_id`s, and the
//! agent stores each once. `clients/python/evd_client.py` is the same protocol in
//! Python with the resending built in.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;

/// The agent's answer to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Durable in the spool with this event seq.
    Ok(u64),
    /// Refused: `code` says why (`json`, `unknown_type`, `schema`, `too_large`,
    /// `spool_full`, `shutting_down`, `not_allowed`, `internal`), `retryable` whether
    /// sending the same line again later can succeed, `error` is for people.
    Error {
        line: u64,
        code: String,
        retryable: bool,
        error: String,
    },
}

impl Response {
    pub fn parse(text: &str) -> Option<Response> {
        // The common answer, as the agent writes it, without a JSON parse.
        if let Some(seq) = text
            .strip_prefix("{\"ok\":")
            .and_then(|rest| rest.strip_suffix('}'))
            .and_then(|n| n.parse().ok())
        {
            return Some(Response::Ok(seq));
        }
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        if let Some(seq) = v.get("ok").and_then(|s| s.as_u64()) {
            return Some(Response::Ok(seq));
        }
        let error = v.get("error")?.as_str()?.to_string();
        // Agents before codes: the code is the error text's prefix.
        let code = match v.get("code").and_then(|c| c.as_str()) {
            Some(code) => code.to_string(),
            None => error.split(':').next().unwrap_or_default().to_string(),
        };
        let retryable = v
            .get("retryable")
            .and_then(|r| r.as_bool())
            .unwrap_or(code == "spool_full");
        Some(Response::Error {
            line: v.get("line")?.as_u64()?,
            code,
            retryable,
            error,
        })
    }
}

/// Streams `input`'s lines to the agent and calls `on_response` for each answer, in
/// order. Writing and reading run concurrently, so thousands of lines are in flight.
pub async fn send_lines<R, F>(socket: &Path, input: R, mut on_response: F) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin + Send + 'static,
    F: FnMut(u64, Response),
{
    let stream = UnixStream::connect(socket).await?;
    let (rd, wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut lines = BufReader::with_capacity(64 << 10, input);
        // Lines go out in as few writes as the input allows: flushed whenever no more
        // input is at hand, so a slow producer of lines is never held back.
        let mut wr = BufWriter::with_capacity(64 << 10, wr);
        let mut buf = Vec::new();
        let mut sent = 0u64;
        loop {
            buf.clear();
            if lines.read_until(b'\n', &mut buf).await? == 0 {
                break;
            }
            if !buf.ends_with(b"\n") {
                buf.push(b'\n');
            }
            wr.write_all(&buf).await?;
            sent += 1;
            if lines.buffer().is_empty() {
                wr.flush().await?;
            }
        }
        wr.flush().await?;
        wr.shutdown().await?;
        std::io::Result::Ok(sent)
    });
    let mut responses = BufReader::new(rd).lines();
    let mut n = 0u64;
    while let Some(line) = responses.next_line().await? {
        n += 1;
        let response = Response::parse(&line).unwrap_or(Response::Error {
            line: 0,
            code: "internal".into(),
            retryable: true,
            error: format!("unparseable response: {line}"),
        });
        on_response(n, response);
    }
    let sent = writer.await.map_err(std::io::Error::other)??;
    if n < sent {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("agent answered {n} of {sent} lines; the rest are not acked"),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::Response;

    #[test]
    fn responses_parse_with_and_without_the_short_cut() {
        assert_eq!(Response::parse("{\"ok\":17}"), Some(Response::Ok(17)));
        assert_eq!(Response::parse("{ \"ok\" : 17 }"), Some(Response::Ok(17)));
        assert_eq!(
            Response::parse("{\"error\":\"spool_full: retry\",\"line\":3}"),
            Some(Response::Error {
                line: 3,
                code: "spool_full".into(),
                retryable: true,
                error: "spool_full: retry".into()
            })
        );
        assert_eq!(
            Response::parse(
                "{\"error\":\"schema: no ts\",\"code\":\"schema\",\"retryable\":false,\"line\":4}"
            ),
            Some(Response::Error {
                line: 4,
                code: "schema".into(),
                retryable: false,
                error: "schema: no ts".into()
            })
        );
        assert_eq!(Response::parse("{\"ok\":-1}"), None);
        assert_eq!(Response::parse("nonsense"), None);
    }
}
