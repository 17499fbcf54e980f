//! DeleteTopics (key 20), by name or (v6) by topic id.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{blocking, message};
use crate::acl::{Caller, Operation, ResourceType};
use crate::protocol::errors::log_error_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (1, 6);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: DeleteTopicsRequest,
    _version: i16,
) -> DeleteTopicsResponse {
    let store = context.store.clone();
    let (authorizer, caller) = (context.authorizer.clone(), caller.clone());
    let mut wanted: Vec<(Option<String>, Uuid)> = request
        .topic_names
        .iter()
        .map(|name| (Some(name.to_string()), Uuid::nil()))
        .collect();
    wanted.extend(
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id)),
    );
    let responses = blocking(move || {
        wanted
            .into_iter()
            .map(|(name, id)| {
                let named = name.is_some();
                let name = name.or_else(|| {
                    store
                        .topics()
                        .into_iter()
                        .find(|t| Uuid::from_bytes(t.id()) == id)
                        .map(|t| t.name().to_string())
                });
                let result = DeletableTopicResult::default()
                    .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
                    .with_topic_id(id);
                let Some(name) = name else {
                    return result.with_error_code(ResponseError::UnknownTopicId.code());
                };
                if !authorizer.allows(&caller, Operation::Delete, ResourceType::Topic, &name) {
                    // Asked by id: the name is not told to whoever may not delete it.
                    let result = if named { result } else { result.with_name(None) };
                    return result
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_error_message(message("not authorized to delete this topic"));
                }
                let by_id = (!id.is_nil()).then_some(id.into_bytes());
                let id = store
                    .topic(&name)
                    .map(|t| Uuid::from_bytes(t.id()))
                    .unwrap_or(id);
                match store.delete_topic(&name, by_id) {
                    Ok(()) => result.with_topic_id(id),
                    Err(crate::log::LogError::UnknownTopic(_)) if by_id.is_some() => {
                        result.with_error_code(ResponseError::UnknownTopicId.code())
                    }
                    Err(error) => result
                        .with_error_code(log_error_code(&error))
                        .with_error_message(message(error.to_string())),
                }
            })
            .collect()
    })
    .await;
    DeleteTopicsResponse::default().with_responses(responses)
}
