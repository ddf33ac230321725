//! The binary's signals. Roles never install handlers: each takes a stop token
//! (`tokio_util::sync::CancellationToken`) and, for the agent, a reload notice; the
//! binary wires signals to them here.

use std::sync::Arc;

use evd_runtime::Stop as CancellationToken;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

/// Resolves at the first SIGTERM or SIGINT. Installs the handlers when called, so
/// call it (and keep the future) before the work starts.
fn terminated() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Cancels `stop` at the first SIGTERM or SIGINT (handlers installed now; call on a
/// runtime).
pub fn cancel_on_terminate(stop: CancellationToken) -> std::io::Result<()> {
    let terminated = terminated()?;
    tokio::spawn(async move {
        terminated.await;
        tracing::info!("stop signal: shutting down");
        stop.cancel();
    });
    Ok(())
}

/// Notifies `reload` at every SIGHUP (handler installed now; call on a runtime).
pub fn notify_on_hangup(reload: Arc<Notify>) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload.notify_one();
        }
    });
    Ok(())
}
