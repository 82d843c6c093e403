//! Tenancy on Kubernetes: which namespaces may use a tenant, and the name a namespaced object
//! (AlertRule, NotificationChannel) has on the server.
//!
//! A tenant is managed from Kubernetes by its `Tenant` resource and used from the namespaces it
//! binds (`spec.namespaces` and `spec.tokenSecret.namespace`). A rule or channel naming a tenant
//! that has no `Tenant`, or whose `Tenant` does not bind the object's namespace, is refused
//! before anything reaches the server. The chart's ValidatingAdmissionPolicy refuses the second
//! case at admission already; the first needs a lookup admission cannot make (a missing param
//! is allowed), so it is this check alone.
//!
//! On the server a namespaced object is `NAMESPACE.NAME` (namespaces have no dots): two
//! same-named rules of two namespaces bound to one tenant are two rules.

use kube::runtime::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use crate::context::{Context, Target};
use crate::error::Result;
use crate::resources::Tenant;

/// The verdict on a namespaced object's tenant.
#[derive(Debug, Clone)]
pub enum Binding {
    /// The tenant's `Tenant`, which names the installation to sync to.
    Bound(Box<Tenant>),
    /// `reason` is the condition's reason; `message` says what to change.
    Refused { reason: &'static str, message: String },
}

/// The object's name on the server: `NAMESPACE.NAME`.
pub fn server_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// Whether `kind` objects in `namespace` may use `tenant`.
pub async fn check(ctx: &Context, kind: &str, tenant: &str, namespace: &str) -> Result<Binding> {
    let tenants: Api<Tenant> = Api::all(ctx.client.clone());
    Ok(verdict(tenants.get_opt(tenant).await?.as_ref(), kind, tenant, namespace))
}

/// Makes `controller` (of rules or channels) look again at a Tenant's objects when the Tenant
/// changes: its binding decides which of them may be on the server.
pub fn watching_tenants<K>(controller: Controller<K>, ctx: &Context, tenant_of: fn(&K) -> &str) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let store = controller.store();
    let tenants: Api<Tenant> = Api::all(ctx.client.clone());
    controller.watches(tenants, watcher::Config::default(), move |tenant| {
        let name = tenant.name_any();
        store
            .state()
            .into_iter()
            .filter(|obj| tenant_of(obj) == name)
            .map(|obj| ObjectRef::from_obj(obj.as_ref()))
            .collect::<Vec<_>>()
    })
}

/// Where a deleted object is to be removed from: where it was synced (`synced` and the status'
/// `installation`), or, never synced, where its bound tenant lives; `None` for an object of an
/// unbound namespace, which never touches the tenant on the server.
pub async fn cleanup_target(
    ctx: &Context,
    kind: &str,
    tenant: &str,
    namespace: &str,
    synced: bool,
    installation: Option<&str>,
) -> Result<Option<Target>> {
    if synced {
        return Ok(Some(ctx.server_at(installation).await?));
    }
    match check(ctx, kind, tenant, namespace).await? {
        Binding::Bound(bound) => Ok(Some(ctx.server_for(bound.spec.installation.as_ref()).await?)),
        Binding::Refused { .. } => Ok(None),
    }
}

fn verdict(found: Option<&Tenant>, kind: &str, tenant: &str, namespace: &str) -> Binding {
    match found {
        None => Binding::Refused {
            reason: "TenantNotFound",
            message: format!(
                "there is no Tenant {tenant}; a {kind} may use only a tenant whose Tenant resource binds its \
                 namespace ({namespace}) in spec.namespaces"
            ),
        },
        Some(t) if t.binds(namespace) => Binding::Bound(Box::new(t.clone())),
        Some(t) => Binding::Refused {
            reason: "NamespaceNotBound",
            message: format!(
                "Tenant {} does not bind namespace {namespace}: add {namespace} to its spec.namespaces",
                t.name_any()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(secret_ns: &str, namespaces: &[&str]) -> Tenant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "microdash.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
            "spec": {"tokenSecret": {"namespace": secret_ns}, "namespaces": namespaces}
        }))
        .unwrap()
    }

    #[test]
    fn a_tenant_binds_its_token_namespace_and_the_listed_ones_only() {
        let t = tenant("acme-system", &["acme-prod", "acme-dev"]);
        for ns in ["acme-system", "acme-prod", "acme-dev"] {
            assert!(matches!(verdict(Some(&t), "AlertRule", "acme", ns), Binding::Bound(_)), "{ns}");
        }
        let Binding::Refused { reason, message } = verdict(Some(&t), "AlertRule", "acme", "intruder") else {
            panic!("an unbound namespace was bound")
        };
        assert_eq!(reason, "NamespaceNotBound");
        assert!(message.contains("add intruder to its spec.namespaces"), "{message}");
        let Binding::Refused { reason, .. } = verdict(None, "AlertRule", "acme", "acme-prod") else {
            panic!("a tenant without a Tenant resource was bound")
        };
        assert_eq!(reason, "TenantNotFound");
    }

    #[test]
    fn server_names_keep_namespaces_apart() {
        assert_ne!(server_name("a", "b-c"), server_name("a-b", "c"));
        assert_eq!(server_name("team-a", "high-cpu"), "team-a.high-cpu");
        microdash_model::alerting::validate_object_name(&server_name(&"n".repeat(63), &"r".repeat(189))).unwrap();
    }
}
