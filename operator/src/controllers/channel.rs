//! `NotificationChannel` → a channel in the server, secrets read from Kubernetes Secrets;
//! the server's verdict and the last delivery → status.

use std::sync::Arc;

use futures_util::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::binding::{self, Binding};
use super::{FINALIZER, error_policy, finish_cleanup, from_finalizer, measured, ms_rfc3339};
use crate::conditions::{Wanted, is_false_with, is_true, merge};
use crate::context::{Context, read_secret_key, update_status};
use crate::error::{Error, Result};
use crate::resources::channel::{LastDelivery, ResolvedSecrets};
use crate::resources::{NotificationChannel, NotificationChannelStatus};

const CONTROLLER: &str = "notificationchannel";

pub async fn run(ctx: Arc<Context>) {
    let channels: Api<NotificationChannel> = ctx.watched();
    let controller = Controller::new(channels, watcher::Config::default());
    binding::watching_tenants(controller, &ctx, |channel| channel.spec.tenant.as_str())
        .shutdown_on_signal()
        .run(reconcile, |obj, err, ctx| error_policy(CONTROLLER, obj.as_ref(), err, &ctx), ctx)
        .for_each(|_| async {})
        .await;
}

pub async fn reconcile(channel: Arc<NotificationChannel>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<NotificationChannel> = Api::namespaced(ctx.client.clone(), &channel.namespace().unwrap_or_default());
    let work = async {
        finalizer(&api, FINALIZER, channel.clone(), |event| async {
            match event {
                Finalizer::Apply(channel) => channel.apply(&ctx).await,
                Finalizer::Cleanup(channel) => channel.cleanup(&ctx).await,
            }
        })
        .await
        .map_err(from_finalizer)
    };
    measured(CONTROLLER, channel.as_ref(), &ctx, work).await
}

impl NotificationChannel {
    /// Reads every Secret key the spec refers to.
    async fn resolve_secrets(&self, ctx: &Context) -> Result<ResolvedSecrets> {
        let namespace = self.namespace().unwrap_or_default();
        let mut out = ResolvedSecrets::default();
        if let Some(webhook) = &self.spec.webhook {
            if let Some(r) = &webhook.url_secret_ref {
                out.url = Some(read_secret_key(&ctx.client, &namespace, &r.name, &r.key).await?);
            }
            if let Some(r) = &webhook.hmac_secret_ref {
                out.hmac_secret = Some(read_secret_key(&ctx.client, &namespace, &r.name, &r.key).await?);
            }
        }
        if let Some(c) = self.spec.email.as_ref().and_then(|e| e.smtp.credentials_secret_ref.as_ref()) {
            out.username = Some(read_secret_key(&ctx.client, &namespace, &c.name, "username").await?);
            out.password = Some(read_secret_key(&ctx.client, &namespace, &c.name, "password").await?);
        }
        Ok(out)
    }

    async fn refused(
        &self,
        ctx: &Context,
        api: &Api<NotificationChannel>,
        previous: NotificationChannelStatus,
        reason: &str,
        message: String,
    ) -> Result<()> {
        if !is_false_with(&previous.conditions, "Accepted", &message) {
            ctx.event(self, true, reason, message.clone()).await;
        }
        let conditions = merge(
            &previous.conditions,
            &[Wanted::no("Accepted", reason, message), Wanted::no("Synced", reason, "not synced")],
            self.metadata.generation,
            k8s_openapi::jiff::Timestamp::now(),
        );
        let status =
            NotificationChannelStatus { observed_generation: self.metadata.generation, conditions, ..previous };
        update_status(api, &self.name_any(), self.status.as_ref(), &status).await
    }

    async fn apply(&self, ctx: &Context) -> Result<Action> {
        let namespace = self.namespace().unwrap_or_default();
        let tenant = self.spec.tenant.as_str();
        let api: Api<NotificationChannel> = Api::namespaced(ctx.client.clone(), &namespace);
        let previous = self.status.clone().unwrap_or_default();
        let generation = self.metadata.generation;
        let name = binding::server_name(&namespace, &self.name_any());
        let bound = match binding::check(ctx, "NotificationChannel", tenant, &namespace).await? {
            Binding::Bound(bound) => bound,
            Binding::Refused { reason, message } => {
                // What it put on the server while bound goes; the Secrets are not read.
                if is_true(&previous.conditions, "Synced") {
                    let target = ctx.server_at(previous.installation.as_deref()).await?;
                    if target.api.delete_channel(tenant, &name).await? {
                        tracing::info!(channel = %name, %tenant, "The channel's namespace is no longer bound: deleted from the server.");
                    }
                }
                let previous = NotificationChannelStatus { last_delivery: None, installation: None, ..previous };
                self.refused(ctx, &api, previous, reason, message).await?;
                return Ok(Action::requeue(ctx.resync));
            }
        };
        let secrets = match self.resolve_secrets(ctx).await {
            Ok(secrets) => secrets,
            Err(Error::Secret(message)) => {
                self.refused(ctx, &api, previous, "SecretNotFound", format!("Secret {message}")).await?;
                return Ok(Action::requeue(ctx.resync));
            }
            Err(e) if e.is_forbidden() => {
                let message = super::secrets_forbidden(&namespace, "the channel's secret references");
                self.refused(ctx, &api, previous, "SecretsForbidden", message).await?;
                return Ok(Action::requeue(ctx.resync));
            }
            Err(e) => return Err(e),
        };
        let wanted = {
            let mut spec = self.spec.to_model(&secrets);
            spec.tenant = None;
            spec
        };
        let target = match ctx.server_for(bound.spec.installation.as_ref()).await {
            Ok(target) => target,
            Err(Error::Installation(message)) => {
                self.refused(ctx, &api, previous, "NoInstallation", message).await?;
                return Ok(Action::requeue(ctx.resync));
            }
            Err(e) => return Err(e),
        };
        let server = &target.api;
        let current = server.get_channel(tenant, &name).await?;
        // The server shows secrets as `<set>`: compare the redacted forms.
        let in_sync = current.as_ref().is_some_and(|view| view.spec == wanted.redacted());
        let changed = previous.observed_generation != generation;
        let view = if in_sync && !changed {
            current.expect("in sync means present")
        } else {
            match server.put_channel(tenant, &name, &wanted).await? {
                Ok(view) => {
                    let note = if current.is_some() && !changed { "restored after a change by hand" } else { "synced" };
                    ctx.event(self, false, "Synced", format!("channel {note} in tenant {tenant}")).await;
                    view
                }
                Err(refusal) => {
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
                    self.refused(ctx, &api, previous, reason, detail).await?;
                    return Ok(if reason == "TenantNotReady" {
                        Action::requeue(ctx.resync)
                    } else {
                        Action::await_change()
                    });
                }
            }
        };
        let conditions = merge(
            &previous.conditions,
            &[
                Wanted::yes("Accepted", "Valid", "the server accepted the channel"),
                Wanted::yes("Synced", "Synced", format!("in sync with channel {name} of tenant {tenant}")),
            ],
            generation,
            k8s_openapi::jiff::Timestamp::now(),
        );
        let last_delivery = view.last_delivery.map(|d| LastDelivery {
            time: ms_rfc3339(d.at),
            ok: d.status == "delivered",
            status: d.status,
            error: d.error,
        });
        if let Some(note) = delivery_failure(previous.last_delivery.as_ref(), last_delivery.as_ref(), tenant) {
            ctx.event(self, true, "DeliveryFailed", note).await;
        }
        let status = NotificationChannelStatus {
            observed_generation: generation,
            conditions,
            last_delivery,
            installation: Some(target.installation.clone()),
        };
        update_status(&api, &self.name_any(), self.status.as_ref(), &status).await?;
        Ok(Action::requeue(ctx.resync))
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        let name = binding::server_name(&self.namespace().unwrap_or_default(), &self.name_any());
        let tenant = self.spec.tenant.as_str();
        let outcome = self.remove_from_server(ctx, &name).await;
        finish_cleanup(ctx, self, outcome, || format!("channel {name} of tenant {tenant}")).await
    }

    /// Deletes the channel from the server it is on (see [`binding::cleanup_target`]).
    async fn remove_from_server(&self, ctx: &Context, name: &str) -> Result<()> {
        let tenant = self.spec.tenant.as_str();
        let status = self.status.clone().unwrap_or_default();
        let namespace = self.namespace().unwrap_or_default();
        let synced = is_true(&status.conditions, "Synced");
        let installation = status.installation.as_deref();
        let Some(target) =
            binding::cleanup_target(ctx, "NotificationChannel", tenant, &namespace, synced, installation).await?
        else {
            return Ok(());
        };
        if target.api.delete_channel(tenant, name).await? {
            tracing::info!(channel = %name, %tenant, "Channel deleted from the server.");
        }
        Ok(())
    }
}

/// The Event for a delivery that failed for good since the last reconcile (a pending one is
/// still being retried; a failure already reported makes no second event).
fn delivery_failure(previous: Option<&LastDelivery>, now: Option<&LastDelivery>, tenant: &str) -> Option<String> {
    let now = now?;
    if now.status != "failed" || previous.is_some_and(|p| p.time == now.time && p.status == now.status) {
        return None;
    }
    let why = now.error.as_deref().unwrap_or("no reason given");
    Some(format!("a notification of tenant {tenant} could not be delivered at {}: {why}", now.time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::verifier;

    /// Mocked API server: a new channel first gets the finalizer, in exactly one JSON patch,
    /// before anything (its secrets, the microdash server) is read or written.
    #[tokio::test]
    async fn a_new_channel_first_gets_the_finalizer_and_nothing_else() {
        let channel: NotificationChannel = serde_json::from_value(serde_json::json!({
            "apiVersion": "microdash.io/v1alpha1", "kind": "NotificationChannel",
            "metadata": {"name": "c", "namespace": "ns", "uid": "u2", "generation": 1},
            "spec": {"tenant": "default", "webhook": {"url": "https://hooks.example/x"}}
        }))
        .unwrap();
        let path = "/apis/microdash.io/v1alpha1/namespaces/ns/notificationchannels/c";
        verifier::first_reconcile_only_adds_the_finalizer(channel, reconcile, path).await;
    }

    #[test]
    fn a_failed_delivery_makes_one_event() {
        let at = |time: &str, status: &str| LastDelivery {
            time: time.into(),
            ok: status == "delivered",
            status: status.into(),
            error: (status != "delivered").then(|| "HTTP 503".into()),
        };
        let failed = at("2026-12-02T10:00:00Z", "failed");
        let note = delivery_failure(None, Some(&failed), "acme").expect("an event");
        assert!(note.contains("acme") && note.contains("HTTP 503"), "{note}");
        assert_eq!(delivery_failure(Some(&failed), Some(&failed), "acme"), None, "reported once");
        let pending = at("2026-12-02T10:00:00Z", "pending");
        assert!(delivery_failure(Some(&pending), Some(&failed), "acme").is_some(), "pending, then failed for good");
        assert_eq!(delivery_failure(None, Some(&pending), "acme"), None, "still being retried");
        let delivered = at("2026-12-02T10:01:00Z", "delivered");
        assert_eq!(delivery_failure(Some(&failed), Some(&delivered), "acme"), None);
        let again = at("2026-12-02T10:02:00Z", "failed");
        assert!(delivery_failure(Some(&failed), Some(&again), "acme").is_some(), "a new failure");
    }
}
