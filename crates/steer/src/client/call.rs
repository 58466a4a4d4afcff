//! One logical call: its record, clock and retry budget.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One logical call: its record, clock and retry budget. Dropping it before
/// it finished records the call as `cancelled`.
pub(super) struct Call {
    pub(super) inner: Arc<Inner>,
    pub(super) record: Option<AgentMetrics>,
    pub(super) route: Route,
    pub(super) start: Instant,
    pub(super) deadline: Instant,
    pub(super) per_attempt: Duration,
    pub(super) retries: u32,
    pub(super) ttft_ms: Option<f64>,
    pub(super) rng: fastrand::Rng,
}

impl Call {
    pub(super) fn start(inner: Arc<Inner>, route: Route, req: &Request, method: Method) -> Self {
        let mut m = AgentMetrics::new(route.provider.clone(), route.model.clone());
        m.method = method;
        if let Some(id) = req.request_id {
            m.request_id = id;
        }
        m.trace_id.clone_from(&req.trace_id);
        m.tags.clone_from(&req.tags);
        if route.simulated {
            m.tags.insert("simulated".into(), "true".into());
        }
        let rng = if route.simulated {
            inner.sim.call_rng()
        } else {
            fastrand::Rng::with_seed(0)
        };
        let start = Instant::now();
        let per_attempt = req.timeout.unwrap_or(inner.timeout);
        let budget = req.deadline.unwrap_or(inner.retry.total_deadline);
        // A user may pass Duration::MAX for "no deadline".
        let deadline = start
            .checked_add(budget)
            .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 86_400));
        Call {
            inner,
            record: Some(m),
            route,
            start,
            deadline,
            per_attempt,
            retries: 0,
            ttft_ms: None,
            rng,
        }
    }

    pub(super) fn elapsed_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// This attempt's budget: the per-attempt timeout, within the deadline.
    pub(super) fn attempt_timeout(&self) -> Duration {
        self.per_attempt
            .min(self.deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1))
    }

    /// How long to wait before retrying after `e`, or `None` to give up.
    pub(super) fn retry_wait(&self, e: &AttemptError) -> Option<Duration> {
        let r = &self.inner.retry;
        if !e.retryable || self.retries >= r.max_retries {
            return None;
        }
        let wait = r.backoff(self.retries + 1, e.retry_after);
        Instant::now()
            .checked_add(wait)
            .is_some_and(|t| t < self.deadline)
            .then_some(wait)
    }

    pub(super) async fn backoff(&mut self, wait: Duration, e: &AttemptError) {
        tracing::debug!(
            provider = %self.route.provider,
            model = %self.route.model,
            class = %e.class,
            retry = self.retries + 1,
            wait_ms = wait.as_millis() as u64,
            "retrying LLM call"
        );
        sleep(wait).await;
        self.retries += 1;
    }

    pub(super) fn take_record(&mut self) -> AgentMetrics {
        let mut m = self
            .record
            .take()
            .unwrap_or_else(|| AgentMetrics::new(self.route.provider.clone(), self.route.model.clone()));
        m.latency_ms = self.elapsed_ms();
        m.ttft_ms = self.ttft_ms;
        m.retries = self.retries;
        m
    }

    /// Record the successful call measured from `c`; returns the record.
    pub(super) fn record_success(&mut self, c: &Completion) -> AgentMetrics {
        let mut m = self.take_record();
        crate::measure::apply_completion(&mut m, c, &self.inner.prices);
        if m.response_model.is_none() {
            m.response_model = Some(self.route.model.clone());
        }
        self.inner.collector.record(m.clone());
        m
    }

    pub(super) fn succeed(&mut self, c: Completion) -> GenerateResponse {
        let m = self.record_success(&c);
        let model = c.response_model.unwrap_or_else(|| self.route.model.clone());
        GenerateResponse {
            text: c.text,
            tool_calls: c.tool_calls,
            finish_reason: c.finish_reason,
            usage: c.usage,
            provider: m.provider.clone(),
            model,
            metrics: m,
        }
    }

    pub(super) fn fail(&mut self, mut e: AttemptError) -> SteerError {
        let key = self
            .inner
            .providers
            .get(&self.route.provider)
            .and_then(|p| p.api_key.as_ref().map(ApiKey::expose));
        // Redact first, then truncate: never the other way round.
        e.message = truncate(redact(&e.message, key), 300);
        let mut m = self.take_record();
        if let Some(p) = &e.partial {
            crate::measure::apply_completion(&mut m, p, &self.inner.prices);
        }
        m.error_class = Some(e.class);
        m.error_message = Some(truncate(e.message.clone(), 200));
        tracing::debug!(provider = %m.provider, model = %m.model, class = %e.class, retries = m.retries, "LLM call failed");
        self.inner.collector.record(m.clone());
        e.into_steer(m)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.record.is_some() {
            let mut m = self.take_record();
            m.error_class = Some(ErrorClass::Cancelled);
            m.error_message = Some("the caller dropped the call before it finished".into());
            self.inner.collector.record(m);
        }
    }
}
