//! Silence writes shared by the HTTP API and `microdash apply`: one validation, one way to
//! resolve relative times, and, for a silence written by name, one rule for what writing it
//! again does.
//!
//! A named silence (`microdash apply`'s `metadata.name`, a `Silence` resource, `PUT
//! /api/v1/silences/by-name/{name}`) is updated in place: it keeps its id, so the alerts it holds
//! stay held without a gap and `silencedBy` keeps naming it. Writing the same silence again
//! changes nothing (`Unchanged`). Relative times (`now+2h`) are resolved at each write, so
//! writing `endsAt: now+2h` again moves the end; an omitted `startsAt` of a silence that has
//! started already keeps the time it started.

use microdash_model::alerting::validate_object_name;
use microdash_model::{FieldError, SilenceSpec, ValidationErrors};

use super::service::SpecError;
use crate::storage::alerts::SilenceRecord;
use crate::storage::{DynStore, StoreError};

/// What writing a silence does (or did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// A checked silence, its times resolved, and what writing it will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub record: SilenceRecord,
    pub outcome: Outcome,
}

fn invalid(field: &str, message: impl Into<String>) -> SpecError {
    SpecError::Invalid(ValidationErrors(vec![FieldError { field: field.into(), message: message.into() }]))
}

/// Checks `spec` and works out the silence to store at `now`: a new one, or (with `name`) the
/// tenant's silence of that name changed or unchanged. Writes nothing.
pub async fn plan(
    store: &DynStore,
    tenant_id: i64,
    name: Option<&str>,
    spec: &SilenceSpec,
    now: i64,
) -> Result<Plan, SpecError> {
    if let Some(name) = name {
        validate_object_name(name).map_err(|e| invalid("name", format!("{name:?}: a name {e}")))?;
    }
    spec.validate().map_err(SpecError::Invalid)?;
    let (mut starts_at, ends_at) = spec.window(now).map_err(SpecError::Invalid)?;
    let previous = match name {
        Some(name) => store.get_silence_by_name(tenant_id, name).await?,
        None => None,
    };
    // An omitted start means "from now on": a silence that has started already keeps its start.
    if spec.starts_at.is_none()
        && let Some(previous) = &previous
        && previous.starts_at <= now
    {
        starts_at = previous.starts_at;
    }
    let record = SilenceRecord {
        tenant_id,
        id: previous.as_ref().map_or_else(|| hex::encode(rand::random::<[u8; 16]>()), |p| p.id.clone()),
        name: name.map(str::to_string),
        matchers: spec.matchers.clone(),
        starts_at,
        ends_at,
        comment: spec.comment.trim().to_string(),
        created_by: spec.created_by.trim().to_string(),
        created_at: previous.as_ref().map_or(now, |p| p.created_at),
    };
    if previous.as_ref() == Some(&record) {
        // Nothing to write, so nothing to refuse: an ended silence applied again stays as it was.
        return Ok(Plan { record, outcome: Outcome::Unchanged });
    }
    if ends_at <= starts_at.max(now) {
        return Err(invalid("endsAt", "must be after startsAt and in the future"));
    }
    let outcome = if previous.is_some() { Outcome::Updated } else { Outcome::Created };
    Ok(Plan { record, outcome })
}

/// Stores a plan; answers what it did. A named silence that another writer created since the
/// plan was made is updated instead.
pub async fn write(store: &DynStore, plan: &Plan, now: i64) -> Result<Outcome, SpecError> {
    let record = &plan.record;
    match plan.outcome {
        Outcome::Unchanged => Ok(Outcome::Unchanged),
        Outcome::Updated => {
            if store.update_silence(record, now).await? {
                Ok(Outcome::Updated)
            } else {
                // Gone since the plan (its tenant deleted): nothing to update.
                Err(StoreError::NotFound(format!("silence {:?}", record.id)).into())
            }
        }
        Outcome::Created => match store.create_silence(record).await {
            Ok(()) => Ok(Outcome::Created),
            Err(StoreError::Conflict(what)) => {
                let Some(name) = record.name.as_deref() else { return Err(StoreError::Conflict(what).into()) };
                let Some(existing) = store.get_silence_by_name(record.tenant_id, name).await? else {
                    return Err(StoreError::Conflict(what).into());
                };
                let record = SilenceRecord { id: existing.id, created_at: existing.created_at, ..record.clone() };
                store.update_silence(&record, now).await?;
                Ok(Outcome::Updated)
            }
            Err(e) => Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, DynStore, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::storage::open(&format!("sqlite://{}", dir.path().join("s.db").display()), false).await.unwrap();
        store.migrate().await.unwrap();
        let tenant = store.create_tenant("default", None).await.unwrap();
        (dir, store, tenant.id)
    }

    fn spec(ends_at: &str) -> SilenceSpec {
        serde_json::from_value(serde_json::json!({
            "matchers": {"host": "web-1"}, "endsAt": ends_at, "comment": "disk", "createdBy": "ops"
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_named_silence_written_again_is_the_same_silence() {
        let (_dir, store, tenant) = store().await;
        let now = 1_000_000;
        let first = plan(&store, tenant, Some("maint"), &spec("now+1h"), now).await.unwrap();
        assert_eq!(write(&store, &first, now).await.unwrap(), Outcome::Created);
        // A minute later the same absolute end is unchanged; the start stays where it was.
        let ends = (now + 3_600_000).to_string();
        let again = plan(&store, tenant, Some("maint"), &spec(&ends), now + 60_000).await.unwrap();
        assert_eq!(again.outcome, Outcome::Unchanged);
        assert_eq!((again.record.id.as_str(), again.record.starts_at), (first.record.id.as_str(), now));
        // A relative end moves; still the same silence.
        let later = plan(&store, tenant, Some("maint"), &spec("now+1h"), now + 60_000).await.unwrap();
        assert_eq!(write(&store, &later, now + 60_000).await.unwrap(), Outcome::Updated);
        let stored = store.get_silence_by_name(tenant, "maint").await.unwrap().unwrap();
        assert_eq!((stored.id, stored.starts_at, stored.ends_at), (first.record.id, now, now + 60_000 + 3_600_000));
        assert_eq!(store.list_silences(Some(tenant), 0).await.unwrap().len(), 1);
        // Once it ended, the same document is still unchanged rather than refused.
        let ended = now + 10 * 3_600_000;
        let late = plan(&store, tenant, Some("maint"), &spec(&(now + 60_000 + 3_600_000).to_string()), ended).await;
        assert_eq!(late.unwrap().outcome, Outcome::Unchanged);
        // A changed one that ended is refused.
        let err = plan(&store, tenant, Some("maint"), &spec(&(now + 3_600_000).to_string()), ended).await.unwrap_err();
        assert_eq!(err.errors()[0].field, "endsAt");
    }

    #[tokio::test]
    async fn a_name_taken_since_the_plan_is_updated_not_doubled() {
        let (_dir, store, tenant) = store().await;
        let a = plan(&store, tenant, Some("maint"), &spec("now+1h"), 1000).await.unwrap();
        let b = plan(&store, tenant, Some("maint"), &spec("now+2h"), 1000).await.unwrap();
        assert_eq!(write(&store, &a, 1000).await.unwrap(), Outcome::Created);
        assert_eq!(write(&store, &b, 1000).await.unwrap(), Outcome::Updated);
        let all = store.list_silences(Some(tenant), 0).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].id.as_str(), all[0].ends_at), (a.record.id.as_str(), 1000 + 7_200_000));
        let bad = plan(&store, tenant, Some("Not A Name"), &spec("now+1h"), 1000).await.unwrap_err();
        assert_eq!(bad.errors()[0].field, "name");
    }
}
