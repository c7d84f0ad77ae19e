//! The Events of a test namespace as `kubectl get events` shows them (core/v1: the controller
//! writes `events.k8s.io/v1` Events, whose `note` the API server serves as `message`), so that
//! every test asks for them the same way and reads the same field.

use anyhow::Result;
use serde_json::Value;

use crate::patroni::json;

/// The Events in `ns` that match the field selector `selector` (e.g. `reason=Update`, or
/// `involvedObject.name=acid-x,reason=Replacing`; empty for all), in the API server's order.
pub async fn events(ns: &str, selector: &str) -> Result<Vec<Value>> {
    let list = if selector.is_empty() {
        json(&["get", "events", "-n", ns]).await?
    } else {
        json(&["get", "events", "-n", ns, "--field-selector", selector]).await?
    };
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// The text of an Event: its `message` (core/v1), else its `note` (events.k8s.io/v1), else "".
pub fn note(event: &Value) -> String {
    event["message"]
        .as_str()
        .or(event["note"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The notes of the Events in `ns` that match the field selector `selector`.
pub async fn notes(ns: &str, selector: &str) -> Result<Vec<String>> {
    Ok(events(ns, selector).await?.iter().map(note).collect())
}

/// The notes of the Events in `ns` with reason `reason`.
pub async fn notes_with_reason(ns: &str, reason: &str) -> Result<Vec<String>> {
    notes(ns, &format!("reason={reason}")).await
}

/// The notes of the Events about the object `name` (the cluster) with reason `reason`.
pub async fn notes_about(ns: &str, name: &str, reason: &str) -> Result<Vec<String>> {
    notes(ns, &format!("involvedObject.name={name},reason={reason}")).await
}
