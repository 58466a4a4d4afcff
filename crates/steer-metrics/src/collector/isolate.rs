//! Panic isolation: a sink that panics is treated like one that fails, so
//! it cannot kill its worker and leave records unaccounted for.

/// Polls a future, turning a panic inside it into an `Err` with the panic
/// message, so a faulty sink cannot kill its worker and leave records
/// unaccounted for.
pub(super) struct CatchPanic<F>(pub(super) F);

impl<F: std::future::Future + Unpin> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        })) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                std::task::Poll::Ready(Err(msg))
            }
        }
    }
}
