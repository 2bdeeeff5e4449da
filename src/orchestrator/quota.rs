//! Monthly budgets per provider and the price table: spend is kept in memory (loaded from
//! `usage_events` at start), alerts once per month at the threshold, exhausted at 100 %.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

/// Where a provider stands this month.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaStatus {
    pub budget_usd: Option<f64>,
    pub used_usd: f64,
    /// None when there is no budget.
    pub used_pct: Option<f64>,
    pub exhausted: bool,
}

/// A crossing of the alert threshold, to be logged and audited once.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub provider: String,
    pub month: String,
    pub used_usd: f64,
    pub budget_usd: f64,
}

#[derive(Default)]
struct Month {
    month: String,
    spent: BTreeMap<String, f64>,
    /// Marked exhausted by the provider itself (`insufficient_quota`).
    exhausted: BTreeSet<String>,
    alerted: BTreeSet<String>,
}

pub struct Quotas {
    budgets: BTreeMap<String, f64>,
    threshold: f64,
    state: Mutex<Month>,
}

/// "YYYY-MM" of now (UTC).
pub fn current_month() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:04}-{:02}", now.year(), u8::from(now.month()))
}

/// The RFC 3339 start of the current month, for queries.
pub fn month_start() -> String {
    format!("{}-01T00:00:00.000000Z", current_month())
}

impl Quotas {
    pub fn new(budgets: BTreeMap<String, f64>, threshold: f64) -> Quotas {
        Quotas {
            budgets,
            threshold,
            state: Mutex::new(Month {
                month: current_month(),
                ..Month::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Month> {
        let mut m = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = current_month();
        if m.month != now {
            *m = Month {
                month: now,
                ..Month::default()
            };
        }
        m
    }

    /// Seeds this month's spend and already-sent alerts (at startup).
    pub fn load(&self, spent: &[(String, f64)], alerted: &[String]) {
        let mut m = self.lock();
        for (p, usd) in spent {
            m.spent.insert(p.clone(), *usd);
        }
        m.alerted.extend(alerted.iter().cloned());
    }

    pub fn status(&self, provider: &str) -> QuotaStatus {
        let m = self.lock();
        let used = m.spent.get(provider).copied().unwrap_or(0.0);
        let budget = self.budgets.get(provider).copied();
        let pct = budget.map(|b| if b > 0.0 { used / b * 100.0 } else { 100.0 });
        QuotaStatus {
            budget_usd: budget,
            used_usd: used,
            used_pct: pct,
            exhausted: m.exhausted.contains(provider) || budget.is_some_and(|b| used >= b),
        }
    }

    /// Adds spend; returns an alert the first time this month the threshold is crossed.
    pub fn add(&self, provider: &str, usd: f64) -> Option<Alert> {
        let mut m = self.lock();
        let used = {
            let e = m.spent.entry(provider.to_string()).or_insert(0.0);
            *e += usd;
            *e
        };
        let budget = *self.budgets.get(provider)?;
        if used >= budget * self.threshold && !m.alerted.contains(provider) {
            m.alerted.insert(provider.to_string());
            return Some(Alert {
                provider: provider.to_string(),
                month: m.month.clone(),
                used_usd: used,
                budget_usd: budget,
            });
        }
        None
    }

    /// The provider said its quota is gone (`insufficient_quota`): exhausted this month.
    pub fn mark_exhausted(&self, provider: &str) {
        self.lock().exhausted.insert(provider.to_string());
    }
}

/// USD per million tokens per model, with a warning once per unpriced model.
pub struct Prices {
    table: BTreeMap<String, (f64, f64)>,
    warned: Mutex<HashSet<String>>,
}

impl Prices {
    pub fn new(table: BTreeMap<String, (f64, f64)>) -> Prices {
        Prices {
            table,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The cost of a call; 0 (and one warning per model) when the model has no price.
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        match self.table.get(model) {
            Some((input, output)) => {
                (prompt_tokens as f64 * input + completion_tokens as f64 * output) / 1_000_000.0
            }
            None => {
                if self
                    .warned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(model.to_string())
                {
                    log::warn!(
                        "prices: model {model:?} has no price; its calls are recorded at cost 0 (set prices.\"{model}\".input/output)"
                    );
                }
                0.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_once_at_threshold_then_exhausted_at_budget() {
        let q = Quotas::new([("openai".to_string(), 10.0)].into(), 0.8);
        assert_eq!(q.add("openai", 7.0), None);
        let a = q.add("openai", 1.5).expect("crossing 80 % alerts");
        assert_eq!((a.used_usd, a.budget_usd), (8.5, 10.0));
        assert_eq!(q.add("openai", 0.5), None, "once per month");
        assert!(!q.status("openai").exhausted);
        q.add("openai", 1.0);
        let s = q.status("openai");
        assert!(s.exhausted);
        assert_eq!(s.used_pct, Some(100.0));
        assert_eq!(q.add("groq", 100.0), None, "no budget, no alert");
        assert!(!q.status("groq").exhausted);
        q.mark_exhausted("groq");
        assert!(q.status("groq").exhausted);
    }

    #[test]
    fn prices_turn_tokens_into_dollars() {
        let p = Prices::new([("gpt-4o".to_string(), (2.50, 10.00))].into());
        assert!((p.cost("gpt-4o", 1_000_000, 0) - 2.5).abs() < 1e-12);
        assert!((p.cost("gpt-4o", 1000, 500) - 0.0075).abs() < 1e-12);
        assert_eq!(p.cost("mystery", 1000, 1000), 0.0);
    }
}
