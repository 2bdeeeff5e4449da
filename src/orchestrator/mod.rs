//! The orchestrator: picks the provider chain for an agent, skips what cannot serve (not
//! configured, circuit open, quota exhausted), calls with retries, falls back, accounts.

mod call;
pub mod quota;

use crate::app::App;
use crate::breaker::{Admission, Breaker, State};
use crate::integrations;
use crate::model::{Agent, AuditEvent, UsageEvent};
use crate::providers::{
    self, Completion, ErrorKind, Message, ProviderError, ProviderName, local, mcp,
};
use quota::{Prices, Quotas};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// What to do: a chat completion, or an MCP tool call with merged arguments.
pub enum Work<'a> {
    Chat {
        messages: &'a [Message],
        max_tokens: Option<u32>,
    },
    Tool {
        arguments: Value,
    },
    /// The MCP tool list (the `/test` call of a tool agent: no side effects).
    ListTools,
}

/// Options of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunOpts {
    /// Try the fallback chain (the agent's own `fallback` must allow it too).
    pub fallback: bool,
    /// Attempts per provider, overriding `1 + max_retries` (the `/test` call uses 1).
    pub attempts: Option<u32>,
}

/// A served request.
#[derive(Debug)]
pub struct Served {
    pub completion: Completion,
    pub provider: ProviderName,
    /// The first provider of the chain, when another one served.
    pub fallback_from: Option<ProviderName>,
    pub cost_usd: f64,
    /// Time spent waiting on upstreams (excluded from vel_tutor's own overhead).
    pub upstream: Duration,
    pub latency: Duration,
}

/// Why one provider did not serve.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub provider: ProviderName,
    pub reason: String,
    /// Whether it was actually called (and failed) rather than skipped.
    pub called: bool,
}

/// Nobody served: what each provider answered or why it was skipped.
#[derive(Debug)]
pub struct Unserved {
    pub refusals: Vec<Refusal>,
    pub upstream: Duration,
}

impl Unserved {
    pub fn any_called(&self) -> bool {
        self.refusals.iter().any(|r| r.called)
    }

    pub fn summary(&self) -> String {
        self.refusals
            .iter()
            .map(|r| format!("{}: {}", r.provider, r.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub struct Orchestrator {
    clients: BTreeMap<ProviderName, ureq::Agent>,
    /// MCP sessions reused across tool calls (Task Master).
    pub mcp_sessions: mcp::SessionPool,
    breakers: BTreeMap<ProviderName, Breaker>,
    pub quotas: Quotas,
    pub prices: Prices,
    last_error: Mutex<BTreeMap<ProviderName, String>>,
}

fn rfc3339_in(d: Duration) -> String {
    crate::storage::rfc3339(time::OffsetDateTime::from(SystemTime::now() + d))
}

/// Full-jitter exponential backoff: a random delay in [base·2ⁿ/2, base·2ⁿ], at most 10 s;
/// a `Retry-After` from the provider wins (up to 60 s).
fn backoff(base_ms: u64, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(Duration::from_secs(60));
    }
    let ceiling = base_ms.saturating_mul(1u64 << attempt.min(16)).min(10_000);
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    let jitter = u64::from_le_bytes(r) % (ceiling / 2 + 1);
    Duration::from_millis(ceiling / 2 + jitter)
}

impl Orchestrator {
    pub fn new(config: &crate::config::Config) -> Orchestrator {
        let mut clients = BTreeMap::new();
        let mut breakers = BTreeMap::new();
        let mut budgets = BTreeMap::new();
        for p in ProviderName::ALL {
            let c = &config.providers[p.as_str()];
            clients.insert(p, providers::agent(c.timeout_ms, c.pool_size));
            breakers.insert(
                p,
                Breaker::new(
                    config.breaker_failures,
                    Duration::from_secs(config.breaker_open_s),
                ),
            );
            if let Some(b) = c.monthly_usd {
                budgets.insert(p.as_str().to_string(), b);
            }
        }
        Orchestrator {
            clients,
            mcp_sessions: mcp::SessionPool::new(4, Duration::from_secs(300)),
            breakers,
            quotas: Quotas::new(budgets, config.quota_alert_threshold),
            prices: Prices::new(config.prices.clone()),
            last_error: Mutex::new(BTreeMap::new()),
        }
    }

    /// The circuit state of a provider, and until when it stays open.
    pub fn circuit(&self, p: ProviderName) -> (State, Option<String>) {
        let b = &self.breakers[&p];
        let now = Instant::now();
        let until = b
            .open_until()
            .filter(|u| *u > now)
            .map(|u| rfc3339_in(u - now));
        (b.state(now), until)
    }

    pub fn last_error(&self, p: ProviderName) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p)
            .cloned()
    }

    /// The providers an agent's work may go to, in order, with the reason for each.
    pub fn chain(
        &self,
        config: &crate::config::Config,
        agent: &Agent,
        fallback: bool,
    ) -> Vec<(ProviderName, String)> {
        let (primary, why) = match ProviderName::parse(&agent.provider) {
            Some(p) => (p, "pinned by the agent".to_string()),
            None => {
                let routed = config
                    .routing
                    .get(&agent.kind)
                    .and_then(|p| ProviderName::parse(p));
                (
                    routed.unwrap_or(ProviderName::Local),
                    format!("routing.{}", agent.kind),
                )
            }
        };
        let mut chain = vec![(primary, why)];
        if fallback && agent.fallback {
            for next in config.fallbacks.get(primary.as_str()).into_iter().flatten() {
                if let Some(p) =
                    ProviderName::parse(next).filter(|p| chain.iter().all(|(q, _)| q != p))
                {
                    chain.push((p, format!("routing.fallbacks.{primary}")));
                }
            }
        }
        chain
    }

    /// Runs `work` for `agent` on behalf of `user_id`. No database connection is held
    /// while a provider is called.
    pub fn run(
        &self,
        app: &App,
        user_id: &str,
        agent: &Agent,
        work: &Work<'_>,
        opts: RunOpts,
    ) -> Result<Served, Unserved> {
        let started = Instant::now();
        let chain = self.chain(&app.config, agent, opts.fallback);
        let primary = chain[0].0;
        let mut refusals: Vec<Refusal> = Vec::new();
        let mut upstream = Duration::ZERO;
        let is_auto = ProviderName::parse(&agent.provider).is_none();
        let mut served = None;
        for (i, (p, why)) in chain.iter().enumerate() {
            let model = if i == 0 {
                agent
                    .model
                    .clone()
                    .unwrap_or_else(|| app.config.providers[p.as_str()].default_model.clone())
            } else {
                app.config.providers[p.as_str()].default_model.clone()
            };
            match self.try_provider(app, user_id, agent, *p, &model, work, opts, &mut upstream) {
                Ok(s) => {
                    served = Some((s, why.clone()));
                    break;
                }
                Err(r) => {
                    let stop = r.called && !(opts.fallback && agent.fallback);
                    refusals.push(r);
                    if stop {
                        break;
                    }
                }
            }
        }
        // With nothing configured at all, an `auto` chat agent gets the offline answer.
        let nothing_configured = refusals
            .iter()
            .all(|r| !r.called && r.reason == "not configured");
        if served.is_none()
            && is_auto
            && nothing_configured
            && matches!(work, Work::Chat { .. })
            && !chain.iter().any(|(p, _)| *p == ProviderName::Local)
        {
            let model = local::MODEL.to_string();
            if let Ok(s) = self.try_provider(
                app,
                user_id,
                agent,
                ProviderName::Local,
                &model,
                work,
                opts,
                &mut upstream,
            ) {
                served = Some((s, "nothing else is configured".to_string()));
            }
        }
        let skipped = refusals
            .iter()
            .map(|r| format!("{} ({})", r.provider, r.reason))
            .collect::<Vec<_>>()
            .join(", ");
        for r in &refusals {
            let kind = if r.called {
                "failed"
            } else {
                r.reason.split([' ', '(']).next().unwrap_or("skipped")
            };
            app.metrics.inc(
                "vel_routing_skips_total",
                &[("provider", r.provider.as_str()), ("reason", kind)],
            );
        }
        match served {
            Some(((provider, completion, cost_usd), why)) => {
                let reason = if provider == primary {
                    why
                } else {
                    format!("fallback from {primary}: {why}")
                };
                app.metrics.inc(
                    "vel_routing_decisions_total",
                    &[
                        ("provider", provider.as_str()),
                        (
                            "fallback",
                            if provider == primary { "false" } else { "true" },
                        ),
                    ],
                );
                log::info!(target: "vel_tutor::routing", agent_id = agent.id.as_str(), provider = provider.as_str(), reason = reason.as_str(), skipped = skipped.as_str();
                    "routing: agent {} ({}) → {provider} [{reason}]{}", agent.id, agent.kind, if skipped.is_empty() { String::new() } else { format!("; skipped {skipped}") });
                Ok(Served {
                    completion,
                    provider,
                    fallback_from: (provider != primary).then_some(primary),
                    cost_usd,
                    upstream,
                    latency: started.elapsed(),
                })
            }
            None => {
                app.metrics.inc(
                    "vel_routing_decisions_total",
                    &[("provider", "none"), ("fallback", "false")],
                );
                log::warn!(target: "vel_tutor::routing", agent_id = agent.id.as_str(), skipped = skipped.as_str();
                    "routing: agent {} ({}) could not be served: {skipped}", agent.id, agent.kind);
                Err(Unserved { refusals, upstream })
            }
        }
    }

    /// One provider: the skip checks, then up to `attempts` calls with backoff.
    #[allow(clippy::too_many_arguments)]
    fn try_provider(
        &self,
        app: &App,
        user_id: &str,
        agent: &Agent,
        p: ProviderName,
        model: &str,
        work: &Work<'_>,
        opts: RunOpts,
        upstream: &mut Duration,
    ) -> Result<(ProviderName, Completion, f64), Refusal> {
        let refuse = |reason: String, called: bool| Refusal {
            provider: p,
            reason,
            called,
        };
        if p == ProviderName::Local && matches!(work, Work::Tool { .. } | Work::ListTools) {
            return Err(refuse("cannot run MCP tools".into(), false));
        }
        let q = self.quotas.status(p.as_str());
        if q.exhausted {
            let why = match q.budget_usd {
                Some(b) if q.used_usd >= b => {
                    format!("quota exhausted (${:.2} of ${b:.2} this month)", q.used_usd)
                }
                _ => "quota exhausted (the provider reported insufficient_quota)".to_string(),
            };
            return Err(refuse(why, false));
        }
        let breaker = &self.breakers[&p];
        let admission = breaker.admit(Instant::now());
        if let Admission::Rejected { until } = admission {
            let left = until.saturating_duration_since(Instant::now());
            return Err(refuse(
                format!("circuit open until {}", rfc3339_in(left)),
                false,
            ));
        }
        let key = match integrations::resolve(app, user_id, p) {
            Ok(Some(k)) => k,
            Ok(None) => {
                breaker.release_probe();
                return Err(refuse("not configured".into(), false));
            }
            Err(e) => {
                breaker.release_probe();
                return Err(refuse(format!("key lookup failed: {e}"), false));
            }
        };
        let cfg = &app.config.providers[p.as_str()];
        let attempts = if admission == Admission::Probe {
            1
        } else {
            opts.attempts.unwrap_or(1 + cfg.max_retries).max(1)
        };
        let mut last: Option<ProviderError> = None;
        for attempt in 0..attempts {
            let t = Instant::now();
            let result = self.call(app, p, &key, model, agent, work);
            let took = t.elapsed();
            *upstream += took;
            app.metrics.observe(
                "vel_provider_latency_seconds",
                &[("provider", p.as_str())],
                took.as_secs_f64(),
            );
            let mut usage = UsageEvent {
                user_id: Some(user_id.to_string()),
                agent_id: Some(agent.id.clone()),
                provider: p.as_str().to_string(),
                model: model.to_string(),
                latency_ms: took.as_millis() as u64,
                key_source: Some(key.source.as_str().to_string()),
                ..UsageEvent::default()
            };
            match result {
                Ok(c) => {
                    breaker.on_success();
                    let cost = self
                        .prices
                        .cost(&c.model, c.prompt_tokens, c.completion_tokens);
                    usage.model = c.model.clone();
                    usage.prompt_tokens = c.prompt_tokens;
                    usage.completion_tokens = c.completion_tokens;
                    usage.cost_usd = cost;
                    usage.outcome = "ok".into();
                    app.usage(usage);
                    self.account(app, p, &c, cost);
                    log::info!(target: "vel_tutor::provider", provider = p.as_str(), model = c.model.as_str(), attempt = attempt + 1, latency_ms = took.as_millis() as u64;
                        "provider call ok: {p} {} attempt {} in {} ms", c.model, attempt + 1, took.as_millis());
                    return Ok((p, c, cost));
                }
                Err(e) => {
                    usage.outcome = e.outcome().into();
                    app.usage(usage);
                    app.metrics.inc(
                        "vel_provider_calls_total",
                        &[("provider", p.as_str()), ("outcome", e.outcome())],
                    );
                    log::warn!(target: "vel_tutor::provider", provider = p.as_str(), model = model, attempt = attempt + 1, latency_ms = took.as_millis() as u64;
                        "provider call failed: {e} (attempt {} of {attempts})", attempt + 1);
                    let opened = if e.counts_against_provider() {
                        breaker.on_failure(Instant::now())
                    } else {
                        breaker.on_success();
                        false
                    };
                    if e.kind == ErrorKind::QuotaExhausted {
                        self.quotas.mark_exhausted(p.as_str());
                    }
                    let retry_after = match &e.kind {
                        ErrorKind::RateLimited { retry_after } => *retry_after,
                        _ => None,
                    };
                    let again = e.retryable() && !opened && attempt + 1 < attempts;
                    self.last_error
                        .lock()
                        .unwrap_or_else(|x| x.into_inner())
                        .insert(p, e.message.clone());
                    last = Some(e);
                    if !again {
                        break;
                    }
                    std::thread::sleep(backoff(cfg.retry_base_ms, attempt, retry_after));
                }
            }
        }
        let e = last.map_or_else(|| "no attempt was made".to_string(), |e| e.message);
        Err(refuse(e, true))
    }

    /// Adds the cost to the month's spend, alerting (log + one audit row) at the threshold.
    fn account(&self, app: &App, p: ProviderName, c: &Completion, cost: f64) {
        let labels = [("provider", p.as_str())];
        app.metrics.inc(
            "vel_provider_calls_total",
            &[("provider", p.as_str()), ("outcome", "ok")],
        );
        app.metrics.add(
            "vel_provider_tokens_total",
            &[("provider", p.as_str()), ("direction", "prompt")],
            c.prompt_tokens as f64,
        );
        app.metrics.add(
            "vel_provider_tokens_total",
            &[("provider", p.as_str()), ("direction", "completion")],
            c.completion_tokens as f64,
        );
        app.metrics
            .add("vel_provider_cost_usd_total", &labels, cost);
        if let Some(alert) = self.quotas.add(p.as_str(), cost) {
            log::warn!(
                "quota: {} has used ${:.2} of its ${:.2} budget for {} ({:.0} %)",
                alert.provider,
                alert.used_usd,
                alert.budget_usd,
                alert.month,
                alert.used_usd / alert.budget_usd * 100.0
            );
            let event = AuditEvent::security(
                "quota.alert",
                &Default::default(),
                Some(
                    json!({ "provider": alert.provider, "month": alert.month, "used_usd": alert.used_usd, "budget_usd": alert.budget_usd }),
                ),
            );
            if let Err(e) = app.storage.record_event(&event) {
                log::error!("quota: could not audit the alert: {e}");
            }
        }
    }

    /// Seeds the month's spend and sent alerts from the database (at startup).
    pub fn load_month(
        &self,
        storage: &crate::storage::Storage,
    ) -> Result<(), crate::storage::StorageError> {
        let since = quota::month_start();
        let spent = storage.spend_by_provider(&since)?;
        let mut alerted = Vec::new();
        for p in ProviderName::ALL {
            if storage.has_event_since("quota.alert", p.as_str(), &since)? {
                alerted.push(p.as_str().to_string());
            }
        }
        self.quotas.load(&spent, &alerted);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        for attempt in 0..4 {
            let ceiling = 100 * (1 << attempt);
            for _ in 0..50 {
                let d = backoff(100, attempt, None).as_millis() as u64;
                assert!(
                    (ceiling / 2..=ceiling).contains(&d),
                    "attempt {attempt}: {d}"
                );
            }
        }
        assert!(backoff(100, 30, None) <= Duration::from_secs(10));
        assert_eq!(
            backoff(100, 0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff(100, 0, Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
    }
}
