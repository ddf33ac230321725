//! The auditor's HTTP face refuses bad parameters with 400 and survives them: no
//! request, however odd, may take the dashboard, the API or `/metrics` down.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use evd_ops::auditor::Shared;

fn start() -> (String, Arc<Shared>) {
    let shared = support::shared(1_795_257_000_000, &support::config(""));
    (support::serve(shared.clone()), shared)
}

/// The status code and body of `GET path`, or `None` when the server closed the
/// connection without an answer.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

#[test]
fn out_of_range_hours_get_400_and_the_auditor_keeps_answering() {
    let (addr, _shared) = start();
    for path in [
        "/api/hour/PageView/4294967295",
        "/hour/PageView/4294967295",
        "/api/hour/PageView/99999-01-01T00",
        "/api/hour/PageView/-1",
        "/api/hour/PageView/not-an-hour",
    ] {
        let answer = get(&addr, path);
        assert_eq!(
            answer.as_ref().map(|a| a.0),
            Some(400),
            "{path}: {answer:?}"
        );
        for after in ["/metrics", "/api/hours", "/", "/hosts"] {
            let (status, _) =
                get(&addr, after).unwrap_or_else(|| panic!("{after} after {path}: no answer"));
            assert_eq!(status, 200, "{after} after {path}");
        }
    }
    // An hour in range but of an unknown type is not found, not a bad request.
    assert_eq!(
        get(&addr, "/api/hour/NoSuchType/493127").map(|a| a.0),
        Some(404)
    );
    assert_eq!(
        get(&addr, "/api/hour/PageView/493127").map(|a| a.0),
        Some(200)
    );
}

/// A task that panics while holding the state lock does not take the dashboard and
/// `/metrics` with it; the recovery is counted so it can alert.
#[test]
fn a_panic_under_the_state_lock_is_survived_and_counted() {
    let (addr, shared) = start();
    let holder = shared.clone();
    let died = std::thread::spawn(move || {
        let _guard = holder.state();
        panic!("a task dies holding the lock");
    })
    .join();
    assert!(died.is_err());
    for path in ["/metrics", "/api/hours", "/", "/hosts", "/api/hosts"] {
        let (status, _) = get(&addr, path).unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(status, 200, "{path}");
    }
    let (_, metrics) = get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains("evd_ops_lock_recoveries_total 1"),
        "{metrics}"
    );
}
