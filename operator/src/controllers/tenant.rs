//! `Tenant` → a tenant in the server through the admin API, its token in a Secret; usage →
//! status; deletion removes the tenant (and with it its data) from the server.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::{FINALIZER, error_policy, finish_cleanup, from_finalizer, measured};
use crate::conditions::{Wanted, merge};
use crate::context::{Context, MANAGER, update_status};
use crate::error::{Error, Result};
use crate::resources::tenant::{TenantUsage, TokenRepair};
use crate::resources::{Tenant, TenantStatus};

const CONTROLLER: &str = "tenant";
/// The key of the token in the tenant's Secret.
pub const TOKEN_KEY: &str = "token";

pub async fn run(ctx: Arc<Context>) {
    let tenants: Api<Tenant> = Api::all(ctx.client.clone());
    Controller::new(tenants, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, |obj, err, ctx| error_policy(CONTROLLER, obj.as_ref(), err, &ctx), ctx)
        .for_each(|_| async {})
        .await;
}

pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    // Tenants are cluster-wide; an operator limited to one namespace manages those whose token
    // Secret lives there (it writes nothing elsewhere), and leaves every other Tenant, finalizer
    // included, to the operator of that namespace.
    if let Some(namespace) = &ctx.watch_namespace
        && tenant.spec.token_secret.namespace != *namespace
    {
        return Ok(Action::await_change());
    }
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let work = async {
        finalizer(&api, FINALIZER, tenant.clone(), |event| async {
            match event {
                Finalizer::Apply(tenant) => tenant.apply(&ctx).await,
                Finalizer::Cleanup(tenant) => tenant.cleanup(&ctx).await,
            }
        })
        .await
        .map_err(from_finalizer)
    };
    measured(CONTROLLER, tenant.as_ref(), &ctx, work).await
}

impl Tenant {
    fn owner_reference(&self) -> OwnerReference {
        self.controller_owner_ref(&()).expect("a stored Tenant has a uid")
    }

    async fn write_token(&self, ctx: &Context, token: &str) -> Result<()> {
        let namespace = &self.spec.token_secret.namespace;
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.token_secret_name()),
                namespace: Some(namespace.clone()),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/managed-by".into(), MANAGER.into()),
                    ("microdash.io/tenant".into(), self.name_any()),
                ])),
                owner_references: Some(vec![self.owner_reference()]),
                ..Default::default()
            },
            string_data: Some(BTreeMap::from([(TOKEN_KEY.into(), token.to_string())])),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        secrets.patch(&self.token_secret_name(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&secret)).await?;
        Ok(())
    }

    /// The token in the tenant's Secret, when there is one.
    async fn token_in_secret(&self, ctx: &Context) -> Result<Option<String>> {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &self.spec.token_secret.namespace);
        Ok(secrets
            .get_opt(&self.token_secret_name())
            .await?
            .and_then(|s| s.data?.remove(TOKEN_KEY))
            .and_then(|v| String::from_utf8(v.0).ok())
            .filter(|t| !t.is_empty()))
    }

    /// Makes the Secret hold a token the server accepts for this tenant: writes one when the
    /// Secret lacks it; when the server refuses the Secret's token (the tenant recreated, the
    /// database restored or lost), registers that same token again so clients keep working, or,
    /// when the server will not take it back (another tenant's, too weak), rotates it. Answers
    /// what was repaired.
    async fn ensure_token(
        &self,
        ctx: &Context,
        server: &crate::server::ServerApi,
        first_token: Option<String>,
    ) -> Result<Option<TokenRepair>> {
        let name = self.name_any();
        let scopes = self.token_scopes();
        let Some(held) = self.token_in_secret(ctx).await? else {
            let token = match first_token {
                Some(token) if scopes.len() == microdash_model::Scope::ALL.len() => token,
                _ => server.create_token(&name, &scopes).await?,
            };
            self.write_token(ctx, &token).await?;
            ctx.event(self, false, "TokenWritten", format!("token written to Secret {}", self.token_secret_ref()))
                .await;
            return Ok(None);
        };
        let reason = match server.token_tenant(&held).await? {
            Some(owner) if owner == name => return Ok(None),
            Some(_) => "the token in the Secret belongs to another tenant".to_string(),
            None => match server.register_token(&name, &held, &scopes).await? {
                Ok(()) => {
                    let reason = "the server did not accept the token in the Secret".to_string();
                    tracing::warn!(tenant = %name, "The server did not accept the tenant's token; registered it again.");
                    ctx.event(self, true, "TokenReregistered", format!("{reason}; registered the same token again"))
                        .await;
                    return Ok(Some(TokenRepair::now("Reregistered", reason)));
                }
                Err(refusal) => format!("the server did not accept the token and refused it again: {}", refusal.detail),
            },
        };
        let token = server.create_token(&name, &scopes).await?;
        self.write_token(ctx, &token).await?;
        tracing::warn!(tenant = %name, %reason, "Rotated the tenant's token.");
        ctx.event(
            self,
            true,
            "TokenRotated",
            format!("{reason}; wrote a new token to Secret {}", self.token_secret_ref()),
        )
        .await;
        Ok(Some(TokenRepair::now("Rotated", reason)))
    }

    async fn apply(&self, ctx: &Context) -> Result<Action> {
        let name = self.name_any();
        let api: Api<Tenant> = Api::all(ctx.client.clone());
        let previous = self.status.clone().unwrap_or_default();
        let generation = self.metadata.generation;
        if let Err(e) = microdash_model::validate_tenant_name(&name) {
            self.not_ready(&api, previous, "InvalidName", format!("a tenant name {e}")).await?;
            return Ok(Action::await_change());
        }
        let target = match ctx.server_for(self.spec.installation.as_ref()).await {
            Ok(target) => target,
            Err(Error::Installation(message)) => {
                self.not_ready(&api, previous, "NoInstallation", message).await?;
                return Ok(Action::requeue(ctx.resync));
            }
            Err(e) => return Err(e),
        };
        let server = &target.api;
        let mut new_token = None;
        let forbidden = || super::secrets_forbidden(&self.spec.token_secret.namespace, "the tenant's token Secret");
        if !server.tenant_exists(&name).await? {
            // Where the token goes must be writable before a token is made for it.
            if let Err(e) = self.token_in_secret(ctx).await {
                if !e.is_forbidden() {
                    return Err(e);
                }
                self.not_ready(&api, previous, "SecretsForbidden", forbidden()).await?;
                return Ok(Action::requeue(ctx.resync));
            }
            new_token = server.create_tenant(&name, self.spec.tenant.display_name.as_deref()).await?;
            tracing::info!(tenant = %name, "Tenant created in the server.");
            ctx.event(self, false, "Created", format!("tenant {name} created in the server")).await;
        }
        let repair = match self.ensure_token(ctx, server, new_token).await {
            Ok(repair) => repair,
            Err(e) if e.is_forbidden() => {
                self.not_ready(&api, previous, "SecretsForbidden", forbidden()).await?;
                return Ok(Action::requeue(ctx.resync));
            }
            Err(e) => return Err(e),
        };
        let mut wanted = vec![];
        if let Some(retention) = &self.spec.tenant.retention
            && let Err(refusal) = server.set_retention(&name, retention).await?
        {
            wanted.push(Wanted::no("Ready", "InvalidRetention", refusal.detail));
        }
        if let Err(refusal) = server.set_limits(&name, self.spec.tenant.limits.as_ref()).await? {
            wanted.push(Wanted::no("Ready", "InvalidLimits", refusal.detail));
        }
        if wanted.is_empty() {
            wanted.push(Wanted::yes("Ready", "Ready", format!("tenant exists; token in {}", self.token_secret_ref())));
        }
        let (metrics, rules, channels) = server.usage(&name).await?;
        let conditions = merge(&previous.conditions, &wanted, generation, k8s_openapi::jiff::Timestamp::now());
        let status = TenantStatus {
            observed_generation: generation,
            conditions,
            token_secret_name: Some(self.token_secret_ref()),
            installation: Some(target.installation.clone()),
            usage: Some(TenantUsage { metrics, rules, channels }),
            token_repair: repair.or(previous.token_repair),
        };
        update_status(&api, &name, self.status.as_ref(), &status).await?;
        Ok(Action::requeue(ctx.resync))
    }

    /// Writes `Ready=False` with `reason` and `message`, the rest of the status as it was.
    async fn not_ready(&self, api: &Api<Tenant>, previous: TenantStatus, reason: &str, message: String) -> Result<()> {
        let generation = self.metadata.generation;
        let conditions = merge(
            &previous.conditions,
            &[Wanted::no("Ready", reason, message)],
            generation,
            k8s_openapi::jiff::Timestamp::now(),
        );
        let status = TenantStatus { observed_generation: generation, conditions, ..previous };
        update_status(api, &self.name_any(), self.status.as_ref(), &status).await
    }

    fn token_secret_ref(&self) -> String {
        format!("{}/{}", self.spec.token_secret.namespace, self.token_secret_name())
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        let name = self.name_any();
        let outcome = async {
            // Where it was synced (the status says), else where the spec points.
            let target = match self.status.as_ref().and_then(|s| s.installation.as_deref()) {
                Some(installation) => ctx.server_at(Some(installation)).await?,
                None => ctx.server_for(self.spec.installation.as_ref()).await?,
            };
            if target.api.delete_tenant(&name).await? {
                tracing::info!(tenant = %name, "Tenant deleted from the server.");
            }
            Ok(())
        }
        .await;
        // Done, or given up on a server that is gone; an error is retried.
        finish_cleanup(ctx, self, outcome, || format!("tenant {name} and its data")).await?;
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &self.spec.token_secret.namespace);
        match secrets.delete(&self.token_secret_name(), &Default::default()).await {
            Ok(_) => {}
            // Gone already; or a namespace the operator may not write to, where it wrote nothing
            // (the Secret's owner reference lets the garbage collector take one written earlier).
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::verifier;

    /// Mocked API server: a new Tenant (cluster-scoped) first gets the finalizer, in exactly
    /// one JSON patch, before its token Secret or the microdash server is touched.
    #[tokio::test]
    async fn a_new_tenant_first_gets_the_finalizer_and_nothing_else() {
        let tenant: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "microdash.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme", "uid": "u3", "generation": 1},
            "spec": {"tokenSecret": {"namespace": "ns"}}
        }))
        .unwrap();
        verifier::first_reconcile_only_adds_the_finalizer(
            tenant,
            reconcile,
            "/apis/microdash.io/v1alpha1/tenants/acme",
        )
        .await;
    }
}
