//! A fault-injecting TCP proxy for the test bed: clients talk to the proxy, the proxy
//! to the broker (which advertises the proxy's address, so every connection a Kafka
//! client opens goes through it).
//!
//! Faults, all switchable while connections are open:
//! - [`cut_all`](FaultProxy::cut_all): every open connection is reset (a network
//!   blip, a load balancer restart);
//! - [`set_blackhole`](FaultProxy::set_blackhole): bytes stop flowing both ways but
//!   connections stay open, as in a partition; they flow again when it ends, like
//!   TCP retransmits after the partition heals (clients that timed out have
//!   reconnected by then);
//! - [`set_latency_ms`](FaultProxy::set_latency_ms) per direction, and
//!   [`set_bandwidth`](FaultProxy::set_bandwidth) in bytes per second per
//!   connection direction: a slow cross-site link.
//!
//! Each connection is four threads (a reader and a delayed writer per direction).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

#[derive(Default)]
struct Faults {
    blackhole: AtomicBool,
    latency_ms: AtomicU64,
    /// 0: unlimited.
    bytes_per_sec: AtomicU64,
}

struct Shared {
    upstream: String,
    faults: Faults,
    stop: AtomicBool,
    /// Both ends of every connection, to cut them.
    open: Mutex<Vec<(TcpStream, TcpStream)>>,
    connections: AtomicU64,
    cuts: AtomicU64,
}

pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("proxy bind")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            faults: Faults::default(),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(listener, s));
        Ok(FaultProxy { port, shared })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Resets every open connection.
    pub fn cut_all(&self) {
        let open = std::mem::take(&mut *self.shared.open.lock().expect("proxy lock"));
        for (a, b) in open {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        self.shared.cuts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_blackhole(&self, on: bool) {
        self.shared.faults.blackhole.store(on, Ordering::SeqCst);
    }

    pub fn set_latency_ms(&self, ms: u64) {
        self.shared.faults.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// `None`: unlimited.
    pub fn set_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.shared
            .faults
            .bytes_per_sec
            .store(bytes_per_sec.unwrap_or(0), Ordering::SeqCst);
    }

    /// Every fault off (open connections stay).
    pub fn heal(&self) {
        self.set_blackhole(false);
        self.set_latency_ms(0);
        self.set_bandwidth(None);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut_all();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(upstream) = TcpStream::connect(&shared.upstream) else {
            // Broker down: the client sees a reset, as it would without the proxy.
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
            continue;
        };
        {
            let mut open = shared.open.lock().expect("proxy lock");
            open.retain(|(a, _)| a.peer_addr().is_ok());
            open.push((c2, u2));
        }
        for (from, to) in [(&client, &upstream), (&upstream, &client)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                continue;
            };
            let s = shared.clone();
            std::thread::spawn(move || pump(from, to, s));
        }
    }
}

/// Copies `from` → `to` under the current faults; closes both when either ends.
fn pump(mut from: TcpStream, to: TcpStream, shared: Arc<Shared>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer_shared = shared.clone();
    let writer_to = to.try_clone();
    let writer = std::thread::spawn(move || {
        let Ok(mut to) = writer_to else { return };
        for (read_at, chunk) in rx {
            let f = &writer_shared.faults;
            let due = read_at + Duration::from_millis(f.latency_ms.load(Ordering::Relaxed));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            while f.blackhole.load(Ordering::Relaxed) && !writer_shared.stop.load(Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if to.write_all(&chunk).is_err() {
                return;
            }
            let bps = f.bytes_per_sec.load(Ordering::Relaxed);
            if bps > 0 {
                std::thread::sleep(Duration::from_secs_f64(chunk.len() as f64 / bps as f64));
            }
        }
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(c: &mut TcpStream) -> std::io::Result<Duration> {
        let t = Instant::now();
        c.write_all(b"ping")?;
        let mut got = [0u8; 4];
        c.read_exact(&mut got)?;
        assert_eq!(&got, b"ping");
        Ok(t.elapsed())
    }

    #[test]
    fn forwards_delays_blackholes_and_cuts() {
        let proxy = FaultProxy::start(&echo_server()).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(round_trip(&mut c).unwrap() < Duration::from_millis(100));
        proxy.set_latency_ms(100);
        assert!(round_trip(&mut c).unwrap() >= Duration::from_millis(200));
        proxy.heal();
        proxy.set_blackhole(true);
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(round_trip(&mut c).is_err(), "nothing comes back");
        proxy.set_blackhole(false);
        let mut late = [0u8; 4];
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.read_exact(&mut late).unwrap();
        assert_eq!(&late, b"ping", "held bytes flow once the partition heals");
        proxy.cut_all();
        assert!(round_trip(&mut c).is_err(), "a cut connection is gone");
        let mut again = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        assert!(round_trip(&mut again).is_ok(), "new connections work");
        assert_eq!(proxy.connections(), 2);
    }
}
