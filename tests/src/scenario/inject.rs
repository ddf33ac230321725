//! The fault thread of a scenario run: which fault comes next, applying and healing
//! it on the bed's processes and proxies, and restarting what exited meanwhile.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Bed, Fault};
use crate::process::EvdProcess;
use crate::rng::Rng;

/// The longest a paused process or broker stays paused.
pub const LONGEST_HOLD: Duration = Duration::from_secs(5);
/// A partition lasts this much longer than a pause.
const BLACKHOLE_EXTRA: Duration = Duration::from_secs(1);
/// The longest a broker stops answering: a partition of the longest hold. Group
/// members' sessions must outlast it (`consumer_proc::SESSION_TIMEOUT`).
pub const LONGEST_BROKER_OUTAGE: Duration = LONGEST_HOLD.saturating_add(BLACKHOLE_EXTRA);

/// The fault thread: after each random gap the next fault of `list` (each once per
/// round, rounds shuffled) until `done`; then brokers that stopped answering are
/// restarted.
#[allow(clippy::too_many_arguments)]
pub(super) fn inject(
    bed: &Mutex<Bed>,
    done: &std::sync::atomic::AtomicBool,
    hold: &std::sync::atomic::AtomicBool,
    list: &[Fault],
    gap: (u64, u64),
    rng: &mut Rng,
    exits: &mut Vec<String>,
) -> BTreeMap<&'static str, u32> {
    let mut counts = BTreeMap::new();
    let mut deck: Vec<Fault> = Vec::new();
    let started = Instant::now();
    let is_done = || done.load(std::sync::atomic::Ordering::SeqCst);
    // Faults start once the consumer has consumed: the scenarios test a running
    // pipeline, not its start-up.
    while !is_done()
        && started.elapsed() < Duration::from_secs(60)
        && bed
            .lock()
            .expect("bed lock")
            .consumer
            .process
            .metric("batches_consumed")
            .is_none_or(|n| n == 0)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    while !is_done() {
        let wait = Instant::now() + Duration::from_millis(rng.range(gap.0, gap.1));
        while Instant::now() < wait && !is_done() {
            restart_exited(bed, exits);
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_done() || list.is_empty() {
            continue;
        }
        if deck.is_empty() {
            // Every fault of the list once per round, in a random order.
            deck = list.to_vec();
            for i in (1..deck.len()).rev() {
                deck.swap(i, rng.range(0, i as u64 + 1) as usize);
            }
        }
        while hold.load(std::sync::atomic::Ordering::SeqCst) && !is_done() {
            restart_exited(bed, exits);
            std::thread::sleep(Duration::from_millis(50));
        }
        let fault = deck.pop().expect("refilled above");
        let central = rng.range(0, 2) == 1;
        let hold = Duration::from_millis(rng.range(2_000, LONGEST_HOLD.as_millis() as u64));
        let side = match (bed.lock().expect("bed lock").central.is_some(), central) {
            (true, true) => " (central)",
            (true, false) => " (edge)",
            _ => "",
        };
        println!(
            "  t+{:.1}s {}{side}",
            started.elapsed().as_secs_f64(),
            fault.name()
        );
        if apply(bed, fault, central, hold) {
            *counts.entry(fault.name()).or_default() += 1;
        } else {
            println!("    skipped: it never started working (see `wait_working`)");
        }
    }
    // tansu 0.6.0 sometimes stops accepting connections after a burst of faults while
    // serving the ones it has; an operator would restart it, and so does the bed
    // (counted, so the figures say when it happened).
    for central in [false, true] {
        let mut b = bed.lock().expect("bed lock");
        if central && b.central.is_none() {
            continue;
        }
        let broker = b.broker(central);
        if !broker.answers_directly(Duration::from_secs(10)) {
            println!("  tansu stopped accepting connections: restarting it");
            broker.restart().expect("broker restart");
            *counts.entry("wedged broker restarted").or_default() += 1;
        }
    }
    counts
}

/// An evd process that exited on its own (not killed by a fault) is a finding: its
/// last log line is kept for the verdict, and it is started again as a supervisor
/// would, so the run goes on.
fn restart_exited(bed: &Mutex<Bed>, exits: &mut Vec<String>) {
    let mut b = bed.lock().expect("bed lock");
    if exited(&mut b.agent.process, "agent", exits) {
        b.agent.restart().expect("agent restart");
    }
    if exited(&mut b.consumer.process, "consumer", exits) {
        b.consumer.spawn().expect("consumer restart");
    }
    if let Some(bridge) = b.bridge.as_mut()
        && exited(&mut bridge.process, "bridge", exits)
    {
        bridge.spawn().expect("bridge restart");
    }
}

/// Whether `p` exited by itself; records its last log line and reaps it.
fn exited(p: &mut EvdProcess, name: &str, exits: &mut Vec<String>) -> bool {
    if p.pid().is_none() || p.is_running() {
        return false;
    }
    let tail = p.log_tail();
    println!("  {name} exited on its own; restarting it. Its log ends:\n{tail}");
    exits.push(format!("{name}: {}", tail.lines().last().unwrap_or("")));
    let _ = p.kill9();
    true
}

/// Waits (up to 15 s) until `metric` of the process `pick` chooses is above 0: a group
/// member killed while still joining left tansu 0.6.0 with partitions it never
/// assigned again, so consumers and bridges are killed only once they work. False if
/// it never did (the kill is then skipped, not counted).
fn wait_working(bed: &Mutex<Bed>, metric: &str, pick: fn(&Bed) -> Option<&EvdProcess>) -> bool {
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(15) {
        let b = bed.lock().expect("bed lock");
        if pick(&b).is_none_or(|p| p.metric(metric).is_some_and(|n| n > 0)) {
            return true;
        }
        drop(b);
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The bridge's part of a drain failure (two-site scenarios): what it forwarded and
/// its log, so a stalled pipeline shows which hop stalled.
pub(super) fn bridge_status(b: &Bed) -> String {
    match &b.bridge {
        None => String::new(),
        Some(bridge) => format!(
            "\nbridge forwarded {:?}:\n{}",
            bridge.metric("records_forwarded"),
            bridge.log_tail()
        ),
    }
}

/// Applies one fault; false if it was skipped.
fn apply(bed: &Mutex<Bed>, fault: Fault, central: bool, hold: Duration) -> bool {
    let lock = || bed.lock().expect("bed lock");
    let working = match fault {
        Fault::KillConsumer => wait_working(bed, "batches_consumed", |b| Some(&b.consumer.process)),
        Fault::KillBridge | Fault::BridgeLosesOffsets => {
            wait_working(bed, "records_forwarded", |b| {
                b.bridge.as_ref().map(|br| &br.process)
            })
        }
        _ => true,
    };
    if !working {
        return false;
    }
    match fault {
        Fault::KillAgent => lock().agent.restart().expect("agent restart"),
        Fault::KillConsumer => lock().consumer.restart().expect("consumer restart"),
        Fault::KillBridge => {
            if let Some(b) = lock().bridge.as_mut() {
                b.restart().expect("bridge restart");
            }
        }
        Fault::BridgeLosesOffsets => {
            let mut b = lock();
            b.bridge_groups += 1;
            let group = format!("bridge-{}", b.bridge_groups);
            if let Some(br) = b.bridge.as_mut() {
                br.restart_without_offsets(&group).expect("bridge restart");
            }
        }
        Fault::RestartBroker => lock().broker(central).restart().expect("broker restart"),
        Fault::PauseBroker => {
            lock().broker(central).pause().expect("pause");
            std::thread::sleep(hold);
            lock().broker(central).resume().expect("resume");
        }
        Fault::PauseAgent => {
            lock().agent.signal(libc::SIGSTOP);
            std::thread::sleep(hold);
            lock().agent.signal(libc::SIGCONT);
        }
        Fault::PauseConsumer => {
            lock().consumer.process.signal(libc::SIGSTOP);
            std::thread::sleep(hold.min(Duration::from_secs(4)));
            lock().consumer.process.signal(libc::SIGCONT);
        }
        Fault::CutConnections => {
            if let Some(p) = lock().broker(central).proxy() {
                p.cut_all();
            }
        }
        Fault::Blackhole => {
            let hold = hold + BLACKHOLE_EXTRA;
            with_proxy(bed, central, |p| p.set_blackhole(true));
            std::thread::sleep(hold);
            with_proxy(bed, central, |p| p.set_blackhole(false));
        }
        Fault::SlowLink => {
            with_proxy(bed, central, |p| {
                p.set_latency_ms(50);
                p.set_bandwidth(Some(1 << 20));
            });
            std::thread::sleep(hold * 2);
            with_proxy(bed, central, |p| p.heal());
        }
    }
    true
}

fn with_proxy(bed: &Mutex<Bed>, central: bool, f: impl FnOnce(&crate::fault_proxy::FaultProxy)) {
    let mut b = bed.lock().expect("bed lock");
    if let Some(p) = b.broker(central).proxy() {
        f(p);
    }
}
