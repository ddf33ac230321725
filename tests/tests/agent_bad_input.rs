//! F13: malformed, oversized and binary input, idle and stuck clients, disallowed
//! peers: each gets a clear per-line error, nothing else is affected, the agent stays up.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use tests::MockBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::oracle::event_line;

fn mock() -> MockBroker {
    let mock = MockBroker::start(1).unwrap();
    mock.create_pipeline_topics(1).unwrap();
    mock
}

/// Writes `input`, half-closes, and returns the response lines.
fn exchange(agent: &AgentProcess, input: &[u8]) -> Vec<String> {
    let s = UnixStream::connect(agent.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = s.try_clone().unwrap();
    let input = input.to_vec();
    let t = std::thread::spawn(move || {
        writer.write_all(&input).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let lines: Vec<String> = BufReader::new(s).lines().map(|l| l.unwrap()).collect();
    t.join().unwrap();
    lines
}

#[test]
fn bad_lines_get_their_own_errors_and_good_lines_are_acked() {
    let mock = mock();
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(
        dir.path(),
        "host-b",
        mock.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();
    let mut input = Vec::new();
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (event_line(1).into_bytes(), None),
        (b"{not json".to_vec(), Some("json: not valid JSON")),
        (
            vec![0xff, 0xfe, 0x00, 0x80, b'{'],
            Some("json: invalid UTF-8 at byte 0"),
        ),
        (
            br#"{"type":"NoSuchType","ts":1}"#.to_vec(),
            Some("unknown_type: unknown event type \"NoSuchType\""),
        ),
        (
            br#"{"type":"PageView","ts":1,"user_id":"u"}"#.to_vec(),
            Some("schema: PageView v1: missing required field `url`"),
        ),
        (
            br#"{"type":"PageView","ts":1,"user_id":7,"url":"/"}"#.to_vec(),
            Some("schema: PageView v1: field `user_id`: expected a string, got number 7"),
        ),
        (
            vec![b'x'; 10 << 20],
            Some("too_large: line is over 921600 bytes"),
        ),
        (b"[]".to_vec(), Some("json: not a JSON object")),
        // A client must not forge the tailer's read positions (they move its
        // checkpoint on recovery and make it skip lines).
        (
            br#"{"type":"PageView","ts":1,"user_id":"u","url":"/","event_id":"tail:801.5f.256.00112233aabbccdd:900"}"#
                .to_vec(),
            Some("schema: event_id \"tail:801.5f"),
        ),
        (event_line(2).into_bytes(), None),
    ];
    for (line, _) in &cases {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    let responses = exchange(&agent, &input);
    assert_eq!(responses.len(), cases.len(), "{responses:?}");
    for (i, ((_, want), got)) in cases.iter().zip(&responses).enumerate() {
        let v: serde_json::Value = serde_json::from_str(got).unwrap();
        match want {
            None => assert!(v["ok"].as_u64().is_some(), "line {}: {got}", i + 1),
            Some(want) => {
                assert_eq!(v["line"].as_u64(), Some(i as u64 + 1), "{got}");
                let error = v["error"].as_str().unwrap();
                assert!(
                    error.starts_with(want),
                    "line {}: {error:?} does not start with {want:?}",
                    i + 1
                );
                // The code for programs is the text's prefix; none of these can
                // succeed by sending the same bytes again.
                let code = want.split(':').next().unwrap();
                assert_eq!(v["code"].as_str(), Some(code), "{got}");
                assert_eq!(v["retryable"].as_bool(), Some(false), "{got}");
            }
        }
    }
    assert_eq!(agent.metric("refused_too_large"), Some(1));
    assert_eq!(agent.metric("events_accepted"), Some(2));
}

#[test]
fn idle_and_stuck_clients_do_not_stall_others() {
    let mock = mock();
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(
        dir.path(),
        "host-s",
        mock.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();
    // 1,000 idle connections.
    let idle: Vec<UnixStream> = (0..1000)
        .map(|_| UnixStream::connect(agent.socket()).unwrap())
        .collect();
    // A client that writes a lot and never reads its responses.
    let mut stuck = UnixStream::connect(agent.socket()).unwrap();
    stuck
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let flood: String = (0..200_000u64).map(|id| event_line(id) + "\n").collect();
    let writer = std::thread::spawn(move || {
        // Stops once the agent stops reading this connection (its responses back up).
        let _ = stuck.write_all(flood.as_bytes());
        stuck
    });
    std::thread::sleep(Duration::from_secs(2));
    // A well-behaved client is still served promptly.
    let started = Instant::now();
    let input: String = (1_000_000..1_001_000u64)
        .map(|id| event_line(id) + "\n")
        .collect();
    let responses = exchange(&agent, input.as_bytes());
    assert_eq!(responses.len(), 1000);
    assert!(
        responses.iter().all(|r| r.starts_with("{\"ok\":")),
        "{:?}",
        &responses[..3]
    );
    println!(
        "1000 events acked in {:?} beside 1,000 idle and 1 stuck client",
        started.elapsed()
    );
    let stuck = writer.join().unwrap();
    drop(stuck);
    drop(idle);
    assert!(agent.metric("events_accepted").is_some(), "agent is up");
}

#[test]
fn a_peer_outside_the_allow_list_is_refused_clearly() {
    let mock = mock();
    let dir = tempfile::tempdir().unwrap();
    let me = unsafe { libc::getuid() };
    let opts = AgentOptions {
        socket_extra: format!("allowed_uids = [{}]", me + 4242),
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start(dir.path(), "host-u", mock.bootstrap(), opts).unwrap();
    // The start-up probe counts as a refused peer too; let its handler finish.
    std::thread::sleep(Duration::from_millis(500));
    let before = agent.metric("refused_peer").unwrap();
    let mut s = UnixStream::connect(agent.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(format!("{}\n", event_line(1)).as_bytes());
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(
        reply.contains(&format!("peer uid {me} is not allowed")),
        "{reply}"
    );
    assert_eq!(agent.metric("refused_peer"), Some(before + 1));
    assert_eq!(agent.metric("events_accepted"), Some(0));
}

/// A resent line with an `event_id` gets the first copy's seq and is stored once, also
/// across an agent restart; a malformed id is that line's error only.
#[test]
fn resent_event_ids_get_the_first_seq_and_are_stored_once() {
    let mock = mock();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProcess::start(
        dir.path(),
        "host-i",
        mock.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();
    let line = tests::oracle::event_line_with_id(7);
    let input = format!(
        "{line}\n{line}\n{}\n{}\n",
        tests::oracle::event_line_with_id(8),
        event_line(9).replacen('{', "{\"event_id\":42,", 1)
    );
    let first = exchange(&agent, input.as_bytes());
    assert_eq!(first[0], first[1], "{first:?}");
    assert_ne!(first[0], first[2]);
    assert!(first[3].contains("`event_id` is number 42"), "{first:?}");
    agent.kill9().unwrap();
    agent.restart().unwrap();
    let again = exchange(&agent, format!("{line}\n").as_bytes());
    assert_eq!(again[0], first[0], "after a kill -9 the id is still known");
    assert_eq!(agent.metric("events_accepted"), Some(0));
    assert_eq!(agent.metric("duplicate_ids"), Some(1));
}
