//! Audit records: one JSON object per lifecycle event, on one log line.
//!
//! A token is named only by its fingerprint. `sub` and `jti` are included only once the
//! signature verified, so a forged token cannot write someone else's identity into the
//! audit trail.

use serde::Serialize;

use crate::host::{Level, Log};

/// Every line starts with this, so log pipelines can select audit records with one match.
pub const PREFIX: &str = "audit ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    TokenAccepted,
    TokenRejected,
    NearExpiry,
    TokenRevoked,
    RegistryEvicted,
    AdminDenied,
    RefreshStarted,
    RefreshSucceeded,
    RefreshFailed,
    RefreshEscalation,
    /// Another replica refreshes this token (it holds the fleet's claim): no call out.
    RefreshDeferred,
    /// etcd could not be asked for the fleet's claim: refreshed under this process's single
    /// flight only.
    RefreshUnclaimed,
    RevocationStoreUnreachable,
    RevocationStoreRecovered,
    RevocationPublishFailed,
    EgressTokenFetched,
    EgressTokenFailed,
    EgressEscalation,
    EgressUnavailable,
    KeysReady,
    KeysStale,
    KeysUnavailable,
    KeysRotated,
}

impl Event {
    pub fn level(self) -> Level {
        match self {
            Event::TokenAccepted | Event::TokenRejected | Event::TokenRevoked | Event::RegistryEvicted => {
                Level::Info
            }
            Event::RefreshStarted | Event::RefreshSucceeded | Event::RevocationStoreRecovered => Level::Info,
            Event::RefreshDeferred => Level::Info,
            Event::RefreshUnclaimed => Level::Warn,
            Event::RevocationStoreUnreachable | Event::RevocationPublishFailed => Level::Warn,
            Event::EgressTokenFetched => Level::Info,
            Event::EgressTokenFailed | Event::EgressUnavailable => Level::Warn,
            Event::EgressEscalation => Level::Error,
            Event::NearExpiry | Event::AdminDenied | Event::RefreshFailed => Level::Warn,
            Event::RefreshEscalation => Level::Error,
            Event::KeysReady | Event::KeysRotated => Level::Info,
            Event::KeysStale => Level::Warn,
            Event::KeysUnavailable => Level::Error,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub event: Event,
    pub ts: u64,
    /// First 16 hex characters of the token's SHA-256.
    pub token: Option<String>,
    /// For `refresh_succeeded`: the new token's fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_token: Option<String>,
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub exp: Option<u64>,
    pub remaining_s: Option<u64>,
    pub reason: Option<String>,
    /// For `token_revoked`: what was revoked (`{"jti": ...}`, `{"sub": ...}`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `false` for a refusal report-only mode did not carry out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced: Option<bool>,
}

impl Record {
    pub fn new(event: Event, ts: u64) -> Record {
        Record {
            event,
            ts,
            token: None,
            new_token: None,
            sub: None,
            jti: None,
            exp: None,
            remaining_s: None,
            reason: None,
            target: None,
            request_id: None,
            path: None,
            enforced: None,
        }
    }

    /// The full log message. Serialising plain strings and numbers cannot fail; should it
    /// ever, the line still says which event happened.
    pub fn line(&self) -> String {
        match serde_json::to_string(self) {
            Ok(json) => format!("{PREFIX}{json}"),
            Err(_) => format!("{PREFIX}{{\"event\":\"{:?}\",\"ts\":{}}}", self.event, self.ts),
        }
    }
}

/// Writes one audit record as one log line, at its event's level.
pub fn emit(log: &impl Log, record: Record) {
    log.log(record.event.level(), &record.line());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_prefix_plus_one_json_object() {
        let mut r = Record::new(Event::TokenRejected, 100);
        r.reason = Some("token_expired".into());
        r.request_id = Some("rid".into());
        let line = r.line();
        let json: serde_json::Value = serde_json::from_str(line.strip_prefix(PREFIX).unwrap()).unwrap();
        assert_eq!(json["event"], "token_rejected");
        assert_eq!(json["reason"], "token_expired");
        assert_eq!(json["request_id"], "rid");
        assert!(json["sub"].is_null());
        assert!(json.get("path").is_none());
    }
}
