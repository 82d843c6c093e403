//! Stateful alerting: rules evaluated on every arriving sample, a state machine per rule
//! instance (rule × matched series), transitions and their notifications written in one
//! transaction (the outbox), and delivery by webhook or email with retries.
//!
//! - `domain`: the pure state machine and window arithmetic.
//! - `engine`: the `CommitListener` that feeds samples to the evaluator task, plus its ticker.
//! - `outbox`: the delivery loop that reads due notifications and records each attempt.
//! - `webhook`, `email`: the two channel kinds.
//! - `service`: rule and channel management shared by the HTTP API and `microdash apply`.
//! - `silences`: silence writes shared by the HTTP API and `microdash apply` (named ones updated in place).
//!
//! Distributed mode (several workers, Redis) will need exactly one owner per rule: the
//! `alert_leases` table is there for it (owner + expiry per tenant and rule, renewed by the
//! ticker); today one process evaluates every rule. Delivery already works with several
//! processes: a notification is claimed by moving its `next_attempt_at` forward in a
//! conditional UPDATE, so only one process sends each attempt.

pub mod email;
pub mod engine;
pub mod outbox;
pub mod payload;
pub mod send_error;
pub mod service;
pub mod silences;
pub mod webhook;

use std::sync::Arc;

/// What the HTTP API needs of alerting: the engine (absent where this process does not
/// evaluate), a notifier for test sends, and the retry policy.
#[derive(Clone, Default)]
pub struct Alerting {
    pub engine: Option<Arc<engine::AlertEngine>>,
    pub notifier: outbox::Notifier,
    pub outbox: outbox::OutboxConfig,
}

impl Alerting {
    /// Tells the engine that one rule was written (`metric`: its metric) or deleted (`None`).
    /// Other processes notice by polling.
    pub fn rule_changed(&self, tenant_id: i64, name: &str, metric: Option<&str>) {
        if let Some(engine) = &self.engine {
            engine.rule_changed(tenant_id, name, metric);
        }
    }

    /// Tells the engine that a silence was created or expired.
    pub fn silences_changed(&self) {
        if let Some(engine) = &self.engine {
            engine.silences_changed();
        }
    }

    /// Tells the engine that a notification channel was written or deleted.
    pub fn channels_changed(&self) {
        if let Some(engine) = &self.engine {
            engine.channels_changed();
        }
    }
}
pub mod apply;
