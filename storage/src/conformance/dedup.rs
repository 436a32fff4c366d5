//! Deduplication of client ids, part of the [`EventLog`] conformance suite: a client id sent
//! again is acknowledged as a duplicate and stored once; server ids are never deduplicated.

use super::log::*;
use crate::{AppendOutcome, EventLog, NewEvent};
use shoal_schemas::Event;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// The same `tenant + entity + id` appended again — in a later call or within one call — is
/// `Duplicate` and stored once; the same id under another entity or tenant is a new event.
pub async fn duplicates_are_stored_once(log: Arc<dyn EventLog>) {
    let tenant = run_tenant();
    let first = event(&tenant, "dup-a", 1);
    assert!(matches!(
        append(log.as_ref(), vec![first.clone()]).await[..],
        [AppendOutcome::Stored(_)]
    ));
    assert_eq!(
        append(log.as_ref(), vec![first.clone()]).await,
        vec![AppendOutcome::Duplicate],
        "appended again in a later call"
    );

    let second = event(&tenant, "dup-b", 2);
    let third = event(&tenant, "dup-c", 3);
    let outcomes = append(
        log.as_ref(),
        vec![second.clone(), first.clone(), second.clone(), third.clone()],
    )
    .await;
    assert!(matches!(outcomes[0], AppendOutcome::Stored(_)));
    assert_eq!(
        outcomes[1],
        AppendOutcome::Duplicate,
        "earlier call's event"
    );
    assert_eq!(outcomes[2], AppendOutcome::Duplicate, "twice in one call");
    assert!(matches!(outcomes[3], AppendOutcome::Stored(_)));

    let mut other_entity = first.clone();
    other_entity.entity = "dup-other".to_owned();
    let other_tenant_name = run_tenant();
    let mut other_tenant = first.clone();
    other_tenant.tenant = other_tenant_name.clone();
    let outcomes = append(log.as_ref(), vec![other_entity, other_tenant]).await;
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, AppendOutcome::Stored(_))),
        "same id under another entity or tenant is stored: {outcomes:?}"
    );

    let reads = read_tenant(log.as_ref(), &tenant, 4).await;
    let mut copies: HashMap<(&str, Uuid), usize> = HashMap::new();
    for read in &reads {
        *copies
            .entry((read.event.entity.as_str(), read.event.id))
            .or_default() += 1;
    }
    assert_eq!(reads.len(), 4, "stored once each: {copies:?}");
    assert!(copies.values().all(|&count| count == 1));
    assert_eq!(
        read_tenant(log.as_ref(), &other_tenant_name, 1).await.len(),
        1
    );
}

/// Events whose ids the server minted are stored (and read back) like any other, and the
/// client ids in the same call are still deduplicated against earlier calls and each other.
/// Whether a backend consults the window for server ids is its own choice, so nothing here
/// depends on it.
pub async fn server_ids_are_stored_beside_deduplicated_client_ids(log: Arc<dyn EventLog>) {
    let tenant = run_tenant();
    let client = event(&tenant, "origin-a", 1);
    assert!(matches!(
        append(log.as_ref(), vec![client.clone()]).await[..],
        [AppendOutcome::Stored(_)]
    ));
    let servers: Vec<Event> = (2..12)
        .map(|n| event(&tenant, &format!("origin-{}", n % 3), n))
        .collect();
    let mut batch = vec![NewEvent::client(client.clone())];
    batch.extend(servers.iter().cloned().map(NewEvent::server));
    let fresh_client = event(&tenant, "origin-b", 12);
    batch.push(NewEvent::client(fresh_client.clone()));
    batch.push(NewEvent::client(fresh_client.clone()));
    let outcomes = log.append_with_origin(batch).await.expect("append");
    assert_eq!(outcomes.len(), servers.len() + 3);
    assert_eq!(
        outcomes[0],
        AppendOutcome::Duplicate,
        "earlier call's event"
    );
    assert!(
        outcomes[1..=servers.len() + 1]
            .iter()
            .all(|outcome| matches!(outcome, AppendOutcome::Stored(_))),
        "server ids and a new client id are stored: {outcomes:?}"
    );
    assert_eq!(
        outcomes[servers.len() + 2],
        AppendOutcome::Duplicate,
        "twice in one call"
    );
    assert_eq!(
        append(log.as_ref(), vec![fresh_client.clone()]).await,
        vec![AppendOutcome::Duplicate],
        "a client id stored beside server ids is remembered"
    );

    let reads = read_tenant(log.as_ref(), &tenant, servers.len() + 2).await;
    assert_eq!(reads.len(), servers.len() + 2, "each stored once");
    let stored: HashSet<Uuid> = reads.iter().map(|read| read.event.id).collect();
    assert!(servers.iter().all(|server| stored.contains(&server.id)));
    assert!(stored.contains(&client.id) && stored.contains(&fresh_client.id));
    // One entity's events keep their append order, whatever their ids' origin.
    let entity_zero: Vec<u64> = reads
        .iter()
        .filter(|read| read.event.entity == "origin-0")
        .map(|read| n_of(&read.event))
        .collect();
    assert_eq!(entity_zero, vec![3, 6, 9]);
}
