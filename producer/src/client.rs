//! The client side of the socket protocol: `evd send` and the tests' load generator.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;

/// The agent's answer to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Durable in the spool with this event seq.
    Ok(u64),
    Error {
        line: u64,
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
        Some(Response::Error {
            line: v.get("line")?.as_u64()?,
            error: v.get("error")?.as_str()?.to_string(),
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
                error: "spool_full: retry".into()
            })
        );
        assert_eq!(Response::parse("{\"ok\":-1}"), None);
        assert_eq!(Response::parse("nonsense"), None);
    }
}
