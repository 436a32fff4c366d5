//! Per-tenant searchable fields, and rebuilding one tenant's documents beside the live ones when
//! they change.
//!
//! Each tenant's documents form a *partition* of the shared index: the value of their `tenant`
//! field, which every search requires. Generation 0 is the tenant id itself; generation `g > 0`
//! is `<tenant>/<g>` (tenant ids never contain `/`, so no two partitions share a value, and the
//! entity keys `n#<partition>#<entity>` stay unique).
//!
//! When a tenant's live rules ask for other searchable fields, the worker starts a [`Rebuild`]:
//! a second cursor per shard that reads the log from its start and indexes that tenant's events
//! (and folds its entities) into the next generation with the new fields, while searches keep
//! answering from the live generation. A rebuild cursor never passes the live one; once it has
//! reached it on a shard, the live reads index that tenant's events into both generations and
//! move both cursors. When it has reached the live cursor on every shard, the commit that
//! follows makes the new generation live (the flip is in the commit payload, so it is atomic
//! with the documents), and the commit after that deletes the old generation: searches that
//! picked the old generation just before the flip still find it. Everything — live positions,
//! rebuild positions, generations, partitions to delete — is in the commit payload, so a crash
//! mid-rebuild resumes it exactly.

use crate::document::SearchFields;
use crate::history::Seeding;
use serde::{Deserialize, Serialize};
use shoal_schemas::{Position, ShardId};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Which event properties and which entity traits of one tenant are searchable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantFields {
    #[serde(default)]
    pub properties: SearchFields,
    #[serde(default)]
    pub traits: SearchFields,
}

/// The live generation of one tenant's documents and the fields it was built with. Tenants
/// absent from the payload are at generation 0 with every field searchable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TenantIndex {
    pub generation: u32,
    pub fields: TenantFields,
    /// The highest generation ever started (a rebuild abandoned half-way keeps its number, so
    /// a later one never reuses a partition whose deletion may still be pending).
    #[serde(default)]
    pub last_generation: u32,
}

/// A tenant's next generation being built beside the live one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rebuild {
    pub tenant: String,
    pub generation: u32,
    pub fields: TenantFields,
    /// Per shard, the last position the rebuild has read (of any tenant: it skips the others).
    pub shards: BTreeMap<ShardId, Position>,
    /// Events of the tenant indexed so far (for progress).
    pub indexed: u64,
    /// When it started (ms).
    pub started_at: i64,
    /// With an archive (`history.rs`), the rebuild first takes the tenant's archived events up
    /// to these positions, segment by segment, then reads the log after them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seeding>,
    /// The seed from the archive is done (or was not needed).
    #[serde(default)]
    pub seeded: bool,
}

impl Rebuild {
    pub fn position(&self, shard: &ShardId) -> Option<&Position> {
        self.shards.get(shard)
    }
}

/// The value of the `tenant` field of a tenant's documents of one generation.
pub(crate) fn partition(tenant: &str, generation: u32) -> Cow<'_, str> {
    if generation == 0 {
        Cow::Borrowed(tenant)
    } else {
        Cow::Owned(format!("{tenant}/{generation}"))
    }
}

/// What a tenant's search answers come from, and the rebuild under way if any.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PartitionStatus {
    pub generation: u32,
    pub fields: TenantFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuilding: Option<RebuildStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RebuildStatus {
    pub generation: u32,
    pub fields: TenantFields,
    /// The tenant's events indexed into the new generation so far.
    pub events_indexed: u64,
    pub started_at: i64,
    /// Per shard, `<sequence>:<index>` of the last position read by the rebuild.
    pub shards: BTreeMap<ShardId, String>,
}

impl RebuildStatus {
    pub(crate) fn of(rebuild: &Rebuild) -> RebuildStatus {
        RebuildStatus {
            generation: rebuild.generation,
            fields: rebuild.fields.clone(),
            events_indexed: rebuild.indexed,
            started_at: rebuild.started_at,
            shards: rebuild
                .shards
                .iter()
                .map(|(shard, position)| (shard.clone(), position.to_string()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_different_generations_never_collide() {
        assert_eq!(partition("acme", 0), "acme");
        assert_eq!(partition("acme", 2), "acme/2");
        // Tenant ids cannot contain `/`, so `acme/2` is never a generation-0 partition.
        assert!(!shoal_schemas::keys::is_valid_tenant("acme/2"));
    }
}
