//! `Silence` → a named silence in the server (`NAMESPACE.NAME`, like rules); its state and
//! resolved times → status. Deleting the resource expires the silence.
//!
//! Relative times (`endsAt: now+2h`) are resolved by the server when a generation of the
//! resource is first synced; the resolved start and end are kept in `status` and sent as they
//! are while the generation stays, so a resync does not move them. An edit of the spec (a new
//! generation) resolves them again. A silence changed or expired by hand on the server is
//! restored at the next resync, until its end has passed; then nothing is written any more.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use microdash_model::{SilenceSpec, SilenceState, SilenceTime, SilenceView};
use serde_json::json;

use super::binding::{self, Binding};
use super::{FINALIZER, error_policy, finish_cleanup, from_finalizer, measured, ms_rfc3339, now_rfc3339};
use crate::conditions::{Wanted, is_true, merge};
use crate::context::{Context, patch_status, update_status};
use crate::error::{Error, Result};
use crate::resources::{Silence, SilenceStatus};

const CONTROLLER: &str = "silence";

pub async fn run(ctx: Arc<Context>) {
    let silences: Api<Silence> = ctx.watched();
    let controller = Controller::new(silences, watcher::Config::default());
    binding::watching_tenants(controller, &ctx, |s| s.spec.silence.tenant.as_deref().unwrap_or_default())
        .shutdown_on_signal()
        .run(reconcile, |obj, err, ctx| error_policy(CONTROLLER, obj.as_ref(), err, &ctx), ctx)
        .for_each(|_| async {})
        .await;
}

pub async fn reconcile(silence: Arc<Silence>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<Silence> = Api::namespaced(ctx.client.clone(), &silence.namespace().unwrap_or_default());
    let work = async {
        finalizer(&api, FINALIZER, silence.clone(), |event| async {
            match event {
                Finalizer::Apply(silence) => silence.apply(&ctx).await,
                Finalizer::Cleanup(silence) => silence.cleanup(&ctx).await,
            }
        })
        .await
        .map_err(from_finalizer)
    };
    measured(CONTROLLER, silence.as_ref(), &ctx, work).await
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// The start and end this generation resolved to, when the status holds them.
fn resolved(status: &SilenceStatus, generation: Option<i64>) -> Option<(i64, i64)> {
    if status.observed_generation != generation {
        return None;
    }
    Some((rfc3339_ms(status.starts_at.as_deref()?)?, rfc3339_ms(status.ends_at.as_deref()?)?))
}

/// Whether the server's silence is `spec` with exactly these times.
fn holds(view: &SilenceView, spec: &SilenceSpec, (starts_at, ends_at): (i64, i64)) -> bool {
    view.matchers == spec.matchers
        && view.comment == spec.comment.trim()
        && view.created_by == spec.created_by.trim()
        && (view.starts_at, view.ends_at) == (starts_at, ends_at)
}

/// When to look again: at the resync, or just after the silence starts or ends if sooner (so
/// that `state` follows the clock).
fn next_look(state: SilenceState, (starts_at, ends_at): (i64, i64), now: i64, resync: Duration) -> Duration {
    let boundary = match state {
        SilenceState::Pending => starts_at,
        SilenceState::Active => ends_at,
        SilenceState::Expired => return resync,
    };
    let until = Duration::from_millis(u64::try_from(boundary - now).unwrap_or(0) + 500);
    until.min(resync)
}

impl Silence {
    fn tenant(&self) -> Option<&str> {
        self.spec.silence.tenant.as_deref()
    }

    async fn apply(&self, ctx: &Context) -> Result<Action> {
        let api: Api<Silence> = Api::namespaced(ctx.client.clone(), &self.namespace().unwrap_or_default());
        let previous = self.status.clone().unwrap_or_default();
        let generation = self.metadata.generation;
        let Some(tenant) = self.tenant() else {
            // The CRD's CEL rule requires it; kept for objects written before that rule.
            let conditions = merge(
                &previous.conditions,
                &[Wanted::no("Accepted", "MissingTenant", "spec.tenant is required")],
                generation,
                Timestamp::now(),
            );
            let status = SilenceStatus { observed_generation: generation, conditions, ..previous.clone() };
            update_status(&api, &self.name_any(), self.status.as_ref(), &status).await?;
            return Ok(Action::await_change());
        };
        let namespace = self.namespace().unwrap_or_default();
        let bound = match binding::check(ctx, "Silence", tenant, &namespace).await? {
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
        let server_name = binding::server_name(&namespace, &self.name_any());
        let name = server_name.as_str();
        // This generation's times once resolved; before that the spec's, as written. Before
        // writing relative times, the status is read again: the object this reconcile got may
        // predate the status the last one wrote (a Tenant's change queues a rerun that can start
        // before the watch has brought that status back), and writing `now+2h` once more
        // would move the end this generation already resolved.
        let times = match resolved(&previous, generation) {
            Some(times) => Some(times),
            None => api.get(&self.name_any()).await?.status.and_then(|fresh| resolved(&fresh, generation)),
        };
        let wanted = {
            let mut spec = self.spec.silence.clone();
            spec.tenant = None;
            if let Some((starts_at, ends_at)) = times {
                spec.starts_at = Some(SilenceTime::Ms(starts_at));
                spec.ends_at = SilenceTime::Ms(ends_at);
            }
            spec
        };
        let current = match server.get_silence(tenant, name).await {
            Ok(current) => current,
            Err(e) => return Err(self.unsynced(&api, &previous, e).await),
        };
        let now = Timestamp::now().as_millisecond();
        let in_sync = times.zip(current.as_ref()).is_some_and(|(times, view)| holds(view, &wanted, times));
        // Once its end has passed there is nothing left to hold: it is not written again.
        let ended = times.is_some_and(|(_, ends_at)| ends_at <= now);
        let view = if in_sync || ended {
            current
        } else {
            let drift = current.is_some() && times.is_some();
            match server.put_silence(tenant, name, &wanted).await {
                Ok(Ok(view)) => {
                    if drift {
                        let note = format!("the silence in tenant {tenant} had been changed by hand; restored");
                        ctx.event(self, true, "DriftCorrected", note).await;
                        tracing::info!(silence = %name, %tenant, "Silence drifted in the server; restored.");
                    } else {
                        ctx.event(self, false, "Synced", format!("silence synced to tenant {tenant}")).await;
                    }
                    Some(view)
                }
                Ok(Err(refusal)) => {
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
                            Wanted::no("Synced", reason, "the server refused the silence"),
                        ],
                        generation,
                        Timestamp::now(),
                    );
                    if !crate::conditions::is_false_with(&previous.conditions, "Accepted", &detail) {
                        ctx.event(self, true, reason, detail.clone()).await;
                    }
                    // No times resolved for this generation: the next try resolves them anew.
                    let status = SilenceStatus {
                        observed_generation: generation,
                        conditions,
                        starts_at: None,
                        ends_at: None,
                        ..previous.clone()
                    };
                    update_status(&api, &self.name_any(), self.status.as_ref(), &status).await?;
                    return Ok(if reason == "TenantNotReady" {
                        Action::requeue(ctx.resync)
                    } else {
                        Action::await_change()
                    });
                }
                Err(e) => return Err(self.unsynced(&api, &previous, e).await),
            }
        };
        let times = view.as_ref().map(|v| (v.starts_at, v.ends_at)).or(times).expect("resolved or just written");
        let state = SilenceState::at(times.0, times.1, now);
        let synced = if in_sync || !ended {
            Wanted::yes(
                "Synced",
                "Synced",
                format!("in sync with silence {name} of tenant {tenant} at {}", server.base()),
            )
        } else {
            Wanted::yes(
                "Synced",
                "Ended",
                format!("the silence ended at {}; nothing is left to hold", ms_rfc3339(times.1)),
            )
        };
        let conditions = merge(
            &previous.conditions,
            &[Wanted::yes("Accepted", "Valid", "the server accepted the silence"), synced],
            generation,
            Timestamp::now(),
        );
        let status = SilenceStatus {
            observed_generation: generation,
            conditions,
            state: Some(state.as_str().to_string()),
            starts_at: Some(ms_rfc3339(times.0)),
            ends_at: Some(ms_rfc3339(times.1)),
            id: view.map(|v| v.id).or(previous.id.clone()),
            installation: Some(target.installation.clone()),
            last_sync: previous.last_sync.clone(),
        };
        if let Some(before) = previous.state.as_deref()
            && before != state.as_str()
        {
            let note = match state {
                SilenceState::Active => format!("silencing in tenant {tenant} until {}", ms_rfc3339(times.1)),
                SilenceState::Expired => format!("ended in tenant {tenant} at {}", ms_rfc3339(times.1)),
                SilenceState::Pending => format!("starts in tenant {tenant} at {}", ms_rfc3339(times.0)),
            };
            let reason = match state {
                SilenceState::Active => "Active",
                SilenceState::Expired => "Ended",
                SilenceState::Pending => "Pending",
            };
            ctx.event(self, false, reason, note).await;
        }
        // `lastSync` moves only with a real change: an unchanged status is not written.
        if self.status.as_ref() != Some(&status) {
            let status = SilenceStatus { last_sync: Some(now_rfc3339()), ..status };
            patch_status(&api, &self.name_any(), json!(status)).await?;
        }
        Ok(Action::requeue(next_look(state, times, now, ctx.resync)))
    }

    /// A silence whose namespace may not use its tenant: what it put on the server while bound
    /// is expired, and the status says what to change.
    async fn unbound(
        &self,
        ctx: &Context,
        api: &Api<Silence>,
        previous: &SilenceStatus,
        tenant: &str,
        reason: &'static str,
        message: String,
    ) -> Result<Action> {
        if is_true(&previous.conditions, "Synced") {
            let server_name = binding::server_name(&self.namespace().unwrap_or_default(), &self.name_any());
            let target = ctx.server_at(previous.installation.as_deref()).await?;
            if target.api.expire_silence(tenant, &server_name).await? {
                tracing::info!(silence = %server_name, %tenant, "The silence's namespace is no longer bound: expired.");
            }
        }
        if !crate::conditions::is_false_with(&previous.conditions, "Accepted", &message) {
            ctx.event(self, true, reason, message.clone()).await;
        }
        let conditions = merge(
            &previous.conditions,
            &[Wanted::no("Accepted", reason, &message), Wanted::no("Synced", reason, "not on the server")],
            self.metadata.generation,
            Timestamp::now(),
        );
        let status = SilenceStatus {
            observed_generation: self.metadata.generation,
            conditions,
            last_sync: previous.last_sync.clone(),
            ..Default::default()
        };
        update_status(api, &self.name_any(), Some(previous), &status).await?;
        // The Tenant watch brings the silence back when the binding changes.
        Ok(Action::requeue(ctx.resync))
    }

    /// Records that the server could not be reached (Synced=False) and hands the error back
    /// for a retry with backoff.
    async fn unsynced(&self, api: &Api<Silence>, previous: &SilenceStatus, error: Error) -> Error {
        let reason = if matches!(error, Error::Installation(_)) { "NoInstallation" } else { "ServerUnreachable" };
        let conditions = merge(
            &previous.conditions,
            &[Wanted::no("Synced", reason, error.to_string())],
            previous.observed_generation,
            Timestamp::now(),
        );
        let status = SilenceStatus { conditions, ..previous.clone() };
        if let Err(e) = update_status(api, &self.name_any(), Some(previous), &status).await {
            tracing::warn!(error = %e, "Could not record the unreachable server in status.");
        }
        error
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        let Some(tenant) = self.tenant() else { return Ok(Action::await_change()) };
        let name = binding::server_name(&self.namespace().unwrap_or_default(), &self.name_any());
        let outcome = self.expire_on_server(ctx, tenant, &name).await;
        finish_cleanup(ctx, self, outcome, || format!("silence {name} of tenant {tenant} (still active)")).await
    }

    /// Expires the silence on the server it is on (see [`binding::cleanup_target`]); it stays
    /// listed there as expired.
    async fn expire_on_server(&self, ctx: &Context, tenant: &str, name: &str) -> Result<()> {
        let status = self.status.clone().unwrap_or_default();
        let namespace = self.namespace().unwrap_or_default();
        let synced = is_true(&status.conditions, "Synced");
        let installation = status.installation.as_deref();
        let Some(target) = binding::cleanup_target(ctx, "Silence", tenant, &namespace, synced, installation).await?
        else {
            return Ok(());
        };
        match target.api.expire_silence(tenant, name).await? {
            true => tracing::info!(silence = %name, %tenant, "Silence expired on the server."),
            false => tracing::debug!(silence = %name, %tenant, "Silence was not active on the server."),
        }
        ctx.event(self, false, "Deleted", format!("silence {name} of tenant {tenant} expired")).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::verifier;

    /// Mocked API server: a new silence first gets the finalizer, in exactly one JSON patch,
    /// before anything reaches the microdash server (which here would not answer).
    #[tokio::test]
    async fn a_new_silence_first_gets_the_finalizer_and_nothing_else() {
        let silence: Silence = serde_json::from_value(json!({
            "apiVersion": "microdash.io/v1alpha1", "kind": "Silence",
            "metadata": {"name": "s", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"tenant": "default", "matchers": {"host": "web-1"}, "endsAt": "now+2h",
                     "comment": "disk", "createdBy": "ops"}
        }))
        .unwrap();
        let path = "/apis/microdash.io/v1alpha1/namespaces/ns/silences/s";
        verifier::first_reconcile_only_adds_the_finalizer(silence, reconcile, path).await;
    }

    #[test]
    fn times_resolved_for_this_generation_are_kept_and_others_are_not() {
        let status = SilenceStatus {
            observed_generation: Some(2),
            starts_at: Some("2026-01-01T00:00:00Z".into()),
            ends_at: Some("2026-01-01T02:00:00.250Z".into()),
            ..Default::default()
        };
        let start = 1_767_225_600_000;
        assert_eq!(resolved(&status, Some(2)), Some((start, start + 7_200_250)));
        assert_eq!(resolved(&status, Some(3)), None, "an edit resolves them again");
        assert_eq!(resolved(&SilenceStatus { ends_at: None, ..status }, Some(2)), None);
        assert_eq!(rfc3339_ms(&ms_rfc3339(start + 7_200_250)), Some(start + 7_200_250), "round trip");
    }

    #[test]
    fn the_next_look_is_at_the_next_boundary_or_the_resync() {
        let resync = Duration::from_secs(300);
        assert_eq!(next_look(SilenceState::Pending, (10_000, 20_000), 0, resync), Duration::from_millis(10_500));
        assert_eq!(next_look(SilenceState::Active, (0, 20_000), 5_000, resync), Duration::from_millis(15_500));
        assert_eq!(next_look(SilenceState::Active, (0, 10_000_000), 0, resync), resync);
        assert_eq!(next_look(SilenceState::Expired, (0, 1), 5, resync), resync);
    }
}
