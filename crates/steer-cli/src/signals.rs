//! SIGINT / SIGTERM for long-running commands (`demo`, `bench`, `proxy`,
//! `generate`): the first signal asks the command to stop issuing calls,
//! deliver what was recorded (within its `--flush-timeout`), print its
//! report and exit 130 (SIGINT) or 143 (SIGTERM); a second signal exits at
//! once.

use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::Notify;

/// Which signal stopped the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Interrupt,
    /// `kill` / a supervisor stopping the process.
    Terminate,
}

impl Signal {
    /// The conventional exit code: 128 + the signal number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    fn code(self) -> u8 {
        match self {
            Signal::Interrupt => 1,
            Signal::Terminate => 2,
        }
    }
}

/// A stop request, shared by the command and its signal listener.
#[derive(Clone, Default)]
pub struct Stop {
    state: Arc<(AtomicU8, Notify)>,
}

impl Stop {
    /// Listen for SIGINT and SIGTERM from now on (replacing the default
    /// "die at once").
    pub fn install() -> Stop {
        let stop = Stop::default();
        let s = stop.clone();
        let mut signals = Signals::new();
        tokio::spawn(async move {
            let mut count = 0u32;
            while let Some(sig) = signals.next().await {
                count += 1;
                if count > 1 {
                    eoutln!(
                        "\n{} again: exiting now, without waiting for delivery",
                        sig.name()
                    );
                    std::process::exit(i32::from(sig.exit_code()));
                }
                eoutln!(
                    "\n{}: no new calls; delivering what was recorded (up to --flush-timeout), then reporting. Send it again to exit at once.",
                    sig.name()
                );
                s.state.0.store(sig.code(), SeqCst);
                s.state.1.notify_waiters();
            }
        });
        stop
    }

    /// The signal received, if any.
    pub fn signal(&self) -> Option<Signal> {
        match self.state.0.load(SeqCst) {
            1 => Some(Signal::Interrupt),
            2 => Some(Signal::Terminate),
            _ => None,
        }
    }

    /// Resolves once a signal has been received.
    pub async fn wait(&self) {
        loop {
            let notified = self.state.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.signal().is_some() {
                return;
            }
            notified.await;
        }
    }
}

/// The process's SIGINT and SIGTERM streams, registered once.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(i), Ok(t)) => Some((i, t)),
            _ => {
                tracing::warn!("cannot listen for SIGINT/SIGTERM; a signal will end the process at once");
                None
            }
        };
        Signals { streams }
    }

    #[cfg(unix)]
    async fn next(&mut self) -> Option<Signal> {
        let Some((int, term)) = self.streams.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            v = int.recv() => v.map(|()| Signal::Interrupt),
            v = term.recv() => v.map(|()| Signal::Terminate),
        }
    }

    #[cfg(not(unix))]
    fn new() -> Self {
        Signals {}
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> Option<Signal> {
        tokio::signal::ctrl_c().await.ok().map(|()| Signal::Interrupt)
    }
}
