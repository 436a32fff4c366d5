//! `group` calls: two events, `{"groupId": …}` on the user (its latest traits say which
//! account it belongs to) and the group traits on the account entity `group:<groupId>`.

use super::{Message, object_map, optional_id};
use crate::parse::native::MESSAGE_ID_NAMESPACE;
use crate::parse::{Context, Rejection};
use serde_json::{Map, Value};
use shoal_schemas::{Event, LIMIT_ENTITY_BYTES};
use uuid::Uuid;

/// The prefix that keeps account entities apart from users with the same id.
pub const ACCOUNT_PREFIX: &str = "group:";

pub(super) fn group(message: &Message<'_>, context: &Context<'_>) -> Result<Vec<Event>, Rejection> {
    let group_id = match optional_id(message.raw.group_id, "groupId")? {
        Some(group) => group,
        None => {
            return Err(Rejection::new(
                "missing",
                "groupId",
                "groupId is required for group calls",
            ));
        }
    };
    let account = format!("{ACCOUNT_PREFIX}{group_id}");
    if account.len() > LIMIT_ENTITY_BYTES {
        return Err(Rejection::new(
            "too_long",
            "groupId",
            format!(
                "groupId is too long (the limit is {} bytes)",
                LIMIT_ENTITY_BYTES - ACCOUNT_PREFIX.len()
            ),
        ));
    }
    let traits = object_map(message.raw.traits, "traits")?;
    let mut link = Map::new();
    link.insert("groupId".to_owned(), Value::String(group_id));
    // Derived from the messageId too, so both halves deduplicate on a resend.
    let account_id = match &message.message_id {
        Some(text) => Uuid::new_v5(&MESSAGE_ID_NAMESPACE, format!("{text}#account").as_bytes()),
        None => Uuid::now_v7(),
    };
    let event_name = message.kind.as_str();
    Ok(vec![
        message.event(
            message.id,
            event_name,
            message.entity.clone(),
            link,
            context,
        )?,
        message.event(account_id, event_name, account, traits, context)?,
    ])
}
