//! Keeps the search index's entity documents annotated with each entity's live stage and band,
//! so search can filter and facet on them.
//!
//! The scores change on events (in the projector) and with the clock (the sweep); the search
//! index is another projection with its own checkpoint. Rather than couple the two, this task
//! reads each tenant's live score index every few seconds and hands the search index the
//! entities whose stage or band differ from what it last handed over (everything after a start
//! or a rules activation). The annotations are therefore eventually consistent, within one
//! period plus one search commit.
//!
//! The same task hands the search index each tenant's searchable fields from its live rules
//! (`search:` in the rules document); when they change, the index rebuilds that tenant's
//! documents beside the live ones and swaps them in when caught up.

use shoal_projector::scores::read::{self, ListScores};
use shoal_projector::scores::versions;
use shoal_rules::document::{FieldSelection, SearchFields as RulesFields};
use shoal_search::{SearchFields, SearchIndex, TenantFields};
use shoal_storage::Table;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PERIOD: Duration = Duration::from_secs(5);

/// What was last handed over, per tenant: the live version and each entity's (stage, band).
type Sent = HashMap<String, (u32, HashMap<String, (Option<String>, &'static str)>)>;

pub struct Annotator {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Annotator {
    /// Reads the rules and scores from `tables` only, so it runs in any process that serves
    /// search, whether or not it runs the projector. It runs on `runtime`: the live
    /// projections' when this process has them, since annotating is read-model work.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        tables: Arc<dyn Table>,
        index: Arc<SearchIndex>,
    ) -> Annotator {
        let (stop, mut stopped) = watch::channel(false);
        let task = runtime.spawn(async move {
            let mut sent = Sent::new();
            let mut interval = tokio::time::interval(PERIOD);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.changed() => return,
                }
                if let Err(error) = round(tables.as_ref(), &index, &mut sent).await {
                    tracing::warn!(%error, "annotating search entities failed; retrying next round");
                }
            }
        });
        Annotator { stop, task }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the search annotator panicked");
        }
    }
}

async fn round(
    tables: &dyn Table,
    index: &SearchIndex,
    sent: &mut Sent,
) -> shoal_projector::Result<()> {
    for tenant in versions::tenants(tables).await? {
        let Some(version) = versions::pointer(tables, &tenant).await?.active else {
            continue;
        };
        let Some(record) = versions::get(tables, &tenant, version).await? else {
            continue;
        };
        let live = versions::compile(&record)?;
        index.set_search_fields(&tenant, search_fields(&live.document().search));
        let (seen_version, seen) = sent.entry(tenant.clone()).or_default();
        if *seen_version != version {
            // A new live version: hand everything over again.
            seen.clear();
            *seen_version = version;
        }
        let mut request = ListScores {
            limit: 1000,
            max_scan: 1000,
            ..ListScores::default()
        };
        loop {
            let page = read::list(tables, version, &tenant, &request).await?;
            for row in &page.entities {
                let now = (row.stage.clone(), row.band.as_str());
                if seen.get(&row.entity) != Some(&now) {
                    index.set_annotations(&tenant, &row.entity, row.stage.as_deref(), Some(now.1));
                    seen.insert(row.entity.clone(), now);
                }
            }
            match page.next {
                Some(next) => request.cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(())
}

/// The rules document's `search:` section, in the index's terms.
fn search_fields(rules: &RulesFields) -> TenantFields {
    let selection = |selection: &FieldSelection| match selection {
        FieldSelection::All => SearchFields::All,
        FieldSelection::Only(names) => SearchFields::Only(names.iter().cloned().collect()),
    };
    TenantFields {
        properties: selection(&rules.properties),
        traits: selection(&rules.traits),
    }
}
