//! `AlertRule` → a rule in the server; the server's verdict and the rule's live state → status.

use std::sync::Arc;

use futures_util::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::binding::{self, Binding};
use super::{FINALIZER, error_policy, finish_cleanup, from_finalizer, measured, ms_rfc3339, now_rfc3339};
use crate::conditions::{Wanted, is_true, merge};
use crate::context::{Context, patch_status, update_status};
use crate::error::{Error, Result};
use crate::resources::{AlertRule, AlertRuleStatus};

const CONTROLLER: &str = "alertrule";

pub async fn run(ctx: Arc<Context>) {
    let rules: Api<AlertRule> = ctx.watched();
    let controller = Controller::new(rules, watcher::Config::default());
    binding::watching_tenants(controller, &ctx, |rule| rule.spec.rule.tenant.as_deref().unwrap_or_default())
        .shutdown_on_signal()
        .run(reconcile, |obj, err, ctx| error_policy(CONTROLLER, obj.as_ref(), err, &ctx), ctx)
        .for_each(|_| async {})
        .await;
}

pub async fn reconcile(rule: Arc<AlertRule>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<AlertRule> = Api::namespaced(ctx.client.clone(), &rule.namespace().unwrap_or_default());
    let work = async {
        finalizer(&api, FINALIZER, rule.clone(), |event| async {
            match event {
                Finalizer::Apply(rule) => rule.apply(&ctx).await,
                Finalizer::Cleanup(rule) => rule.cleanup(&ctx).await,
            }
        })
        .await
        .map_err(from_finalizer)
    };
    measured(CONTROLLER, rule.as_ref(), &ctx, work).await
}

impl AlertRule {
    fn tenant(&self) -> Option<&str> {
        self.spec.rule.tenant.as_deref()
    }

    async fn apply(&self, ctx: &Context) -> Result<Action> {
        let name = self.name_any();
        let api: Api<AlertRule> = Api::namespaced(ctx.client.clone(), &self.namespace().unwrap_or_default());
        let previous = self.status.clone().unwrap_or_default();
        let generation = self.metadata.generation;
        let Some(tenant) = self.tenant() else {
            // The CRD's CEL rule requires it; kept for objects written before that rule.
            let conditions = merge(
                &previous.conditions,
                &[Wanted::no("Accepted", "MissingTenant", "spec.tenant is required")],
                generation,
                k8s_openapi::jiff::Timestamp::now(),
            );
            let status = AlertRuleStatus { observed_generation: generation, conditions, ..previous.clone() };
            update_status(&api, &name, self.status.as_ref(), &status).await?;
            return Ok(Action::await_change());
        };
        let namespace = self.namespace().unwrap_or_default();
        let bound = match binding::check(ctx, "AlertRule", tenant, &namespace).await? {
            Binding::Bound(bound) => bound,
            Binding::Refused { reason, message } => {
                return self.unbound(ctx, &api, &previous, tenant, reason, message).await;
            }
        };
        let target = match ctx.server_for(bound.spec.installation.as_ref()).await {
            Ok(target) => target,
            Err(e) => return Err(self.unsynced(&api, &previous, e).await),
        };
        let server = &target.api;
        let wanted = {
            let mut spec = self.spec.rule.clone();
            spec.tenant = None;
            // Channels are named in the rule's namespace, as the NotificationChannels are.
            spec.channels = spec.channels.iter().map(|c| binding::server_name(&namespace, c)).collect();
            spec
        };
        let server_name = binding::server_name(&namespace, &name);
        let name = server_name.as_str();
        let current = match server.get_rule(tenant, name).await {
            Ok(current) => current,
            Err(e) => return Err(self.unsynced(&api, &previous, e).await),
        };
        let in_sync = current.as_ref().is_some_and(|view| view.spec == wanted);
        let view = if in_sync {
            current
        } else {
            let drift = current.is_some() && previous.observed_generation == generation;
            match server.put_rule(tenant, name, &wanted).await {
                Ok(Ok(view)) => {
                    if drift {
                        ctx.event(
                            self,
                            true,
                            "DriftCorrected",
                            format!("the rule in tenant {tenant} had been changed by hand; restored"),
                        )
                        .await;
                        tracing::info!(rule = %name, %tenant, "Rule drifted in the server; restored.");
                    } else {
                        ctx.event(self, false, "Synced", format!("rule synced to tenant {tenant}")).await;
                    }
                    Some(view)
                }
                Ok(Err(refusal)) => {
                    // Bound but unknown to the server: its Tenant is not created there yet (the Tenant
                    // controller works beside this one); the watch on Tenants brings it back.
                    let (reason, detail) = if refusal.status == 404 {
                        (
                            "TenantNotReady",
                            format!("tenant {tenant} is not on the server yet (its Tenant is not Ready); retrying"),
                        )
                    } else {
                        ("Invalid", refusal.detail.clone())
                    };
                    let conditions = merge(
                        &previous.conditions,
                        &[
                            Wanted::no("Accepted", reason, &detail),
                            Wanted::no("Synced", reason, "the server refused the spec"),
                        ],
                        generation,
                        k8s_openapi::jiff::Timestamp::now(),
                    );
                    if !crate::conditions::is_false_with(&previous.conditions, "Accepted", &detail) {
                        ctx.event(self, true, reason, detail.clone()).await;
                    }
                    let status = AlertRuleStatus { observed_generation: generation, conditions, ..previous.clone() };
                    update_status(&api, &self.name_any(), self.status.as_ref(), &status).await?;
                    // A missing tenant may appear; a bad spec waits for an edit.
                    return Ok(if reason == "TenantNotReady" {
                        Action::requeue(ctx.resync)
                    } else {
                        Action::await_change()
                    });
                }
                Err(e) => return Err(self.unsynced(&api, &previous, e).await),
            }
        };
        let view = view.expect("set above");
        let last_transition = server.last_transition(tenant, name).await.ok().flatten();
        let conditions = merge(
            &previous.conditions,
            &[
                Wanted::yes("Accepted", "Valid", "the server accepted the rule"),
                Wanted::yes(
                    "Synced",
                    "Synced",
                    format!("in sync with rule {name} of tenant {tenant} at {}", server.base()),
                ),
            ],
            generation,
            k8s_openapi::jiff::Timestamp::now(),
        );
        let status = AlertRuleStatus {
            observed_generation: generation,
            conditions,
            state: Some(view.status.state.to_string()),
            matched_series: Some(view.status.instances as i64),
            firing_series: Some(view.status.firing as i64),
            last_evaluation: last_transition.map(ms_rfc3339).or(previous.last_evaluation.clone()),
            installation: Some(target.installation.clone()),
            last_sync: previous.last_sync.clone(),
        };
        if let Some((warning, reason, note)) = state_event(
            previous.state.as_deref(),
            view.status.state.as_str(),
            view.status.firing as i64,
            view.status.instances as i64,
            tenant,
        ) {
            ctx.event(self, warning, reason, note).await;
        }
        // `lastSync` moves only with a real change: an unchanged status is not written.
        if self.status.as_ref() != Some(&status) {
            let status = AlertRuleStatus { last_sync: Some(now_rfc3339()), ..status };
            patch_status(&api, &self.name_any(), json!(status)).await?;
        }
        Ok(Action::requeue(ctx.resync))
    }

    /// A rule whose namespace may not use its tenant: nothing of it stays on the server (what it
    /// put there while bound is deleted) and the status says what to change.
    async fn unbound(
        &self,
        ctx: &Context,
        api: &Api<AlertRule>,
        previous: &AlertRuleStatus,
        tenant: &str,
        reason: &'static str,
        message: String,
    ) -> Result<Action> {
        if is_true(&previous.conditions, "Synced") {
            let server_name = binding::server_name(&self.namespace().unwrap_or_default(), &self.name_any());
            let target = ctx.server_at(previous.installation.as_deref()).await?;
            if target.api.delete_rule(tenant, &server_name).await? {
                tracing::info!(rule = %server_name, %tenant, "The rule's namespace is no longer bound: deleted from the server.");
            }
        }
        if !crate::conditions::is_false_with(&previous.conditions, "Accepted", &message) {
            ctx.event(self, true, reason, message.clone()).await;
        }
        let conditions = merge(
            &previous.conditions,
            &[Wanted::no("Accepted", reason, &message), Wanted::no("Synced", reason, "not on the server")],
            self.metadata.generation,
            k8s_openapi::jiff::Timestamp::now(),
        );
        let status = AlertRuleStatus {
            observed_generation: self.metadata.generation,
            conditions,
            last_sync: previous.last_sync.clone(),
            ..Default::default()
        };
        update_status(api, &self.name_any(), Some(previous), &status).await?;
        // The Tenant watch brings the rule back when the binding changes.
        Ok(Action::requeue(ctx.resync))
    }

    /// Records that the server could not be reached (Synced=False) and hands the error back
    /// for a retry with backoff.
    async fn unsynced(&self, api: &Api<AlertRule>, previous: &AlertRuleStatus, error: Error) -> Error {
        let reason = if matches!(error, Error::Installation(_)) { "NoInstallation" } else { "ServerUnreachable" };
        let conditions = merge(
            &previous.conditions,
            &[Wanted::no("Synced", reason, error.to_string())],
            previous.observed_generation,
            k8s_openapi::jiff::Timestamp::now(),
        );
        let status = AlertRuleStatus { conditions, ..previous.clone() };
        if let Err(e) = update_status(api, &self.name_any(), Some(previous), &status).await {
            tracing::warn!(error = %e, "Could not record the unreachable server in status.");
        }
        error
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        let Some(tenant) = self.tenant() else { return Ok(Action::await_change()) };
        let name = binding::server_name(&self.namespace().unwrap_or_default(), &self.name_any());
        let outcome = self.remove_from_server(ctx, tenant, &name).await;
        finish_cleanup(ctx, self, outcome, || format!("rule {name} of tenant {tenant}")).await
    }

    /// Deletes the rule from the server it is on (see [`binding::cleanup_target`]).
    async fn remove_from_server(&self, ctx: &Context, tenant: &str, name: &str) -> Result<()> {
        let status = self.status.clone().unwrap_or_default();
        let namespace = self.namespace().unwrap_or_default();
        let synced = is_true(&status.conditions, "Synced");
        let installation = status.installation.as_deref();
        let Some(target) = binding::cleanup_target(ctx, "AlertRule", tenant, &namespace, synced, installation).await?
        else {
            return Ok(());
        };
        match target.api.delete_rule(tenant, name).await? {
            true => tracing::info!(rule = %name, %tenant, "Rule deleted from the server."),
            false => tracing::debug!(rule = %name, %tenant, "Rule was not in the server."),
        }
        ctx.event(self, false, "Deleted", format!("rule {name} removed from tenant {tenant}")).await;
        Ok(())
    }
}

/// The Event for a change of the rule's worst state seen between two reconciles (what `kubectl
/// describe` users watch): FIRING and NODATA are warnings, a return to OK or RESOLVED after a
/// problem is normal; PENDING and the first state seen (no previous status) make none. Polled at
/// the resync interval, so a problem shorter than it may pass unseen (the webhook and email
/// channels are the real-time path).
fn state_event(
    previous: Option<&str>,
    now: &str,
    firing: i64,
    matched: i64,
    tenant: &str,
) -> Option<(bool, &'static str, String)> {
    let previous = previous?;
    if previous == now {
        return None;
    }
    match now {
        "FIRING" => {
            Some((true, "Firing", format!("{firing} of {matched} series firing in tenant {tenant} (was {previous})")))
        }
        "NODATA" => Some((true, "NoData", format!("no data for the rule in tenant {tenant} (was {previous})"))),
        "OK" | "RESOLVED" if matches!(previous, "FIRING" | "NODATA") => {
            Some((false, "Resolved", format!("{now} in tenant {tenant} (was {previous})")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::verifier;

    /// Mocked API server: a new rule first gets the finalizer, in exactly one JSON patch,
    /// before anything reaches the microdash server (which here would not answer).
    #[tokio::test]
    async fn a_new_rule_first_gets_the_finalizer_and_nothing_else() {
        let rule: AlertRule = serde_json::from_value(json!({
            "apiVersion": "microdash.io/v1alpha1", "kind": "AlertRule",
            "metadata": {"name": "r", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"tenant": "default", "metric": "m", "condition": {"aggregation": "last", "op": ">", "threshold": 1}}
        }))
        .unwrap();
        let path = "/apis/microdash.io/v1alpha1/namespaces/ns/alertrules/r";
        verifier::first_reconcile_only_adds_the_finalizer(rule, reconcile, path).await;
    }

    #[test]
    fn state_changes_a_person_acts_on_make_events() {
        let event = |previous, now| state_event(previous, now, 2, 5, "acme").map(|(w, reason, _)| (w, reason));
        assert_eq!(event(Some("OK"), "FIRING"), Some((true, "Firing")));
        assert_eq!(event(Some("PENDING"), "FIRING"), Some((true, "Firing")));
        assert_eq!(event(Some("OK"), "NODATA"), Some((true, "NoData")));
        assert_eq!(event(Some("FIRING"), "RESOLVED"), Some((false, "Resolved")));
        assert_eq!(event(Some("FIRING"), "OK"), Some((false, "Resolved")));
        assert_eq!(event(Some("NODATA"), "OK"), Some((false, "Resolved")));
        assert_eq!(event(Some("FIRING"), "FIRING"), None, "no change, no event");
        assert_eq!(event(Some("OK"), "PENDING"), None);
        assert_eq!(event(Some("PENDING"), "OK"), None, "a pending that never fired is no news");
        assert_eq!(event(None, "FIRING"), None, "the first status seen is not a change");
        let (_, _, note) = state_event(Some("OK"), "FIRING", 2, 5, "acme").unwrap();
        assert_eq!(note, "2 of 5 series firing in tenant acme (was OK)");
    }
}
