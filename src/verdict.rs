//! What the core decides for a request, for the host layer to carry out: forward (maybe
//! with a refreshed token), answer locally, call the token endpoint, hold, or inject the
//! service's own token (egress).

use crate::audit::{self, Event, Record};
pub use crate::header::{Edits, HeaderEdit};
use crate::host::Host;
use crate::metrics::Counter;
use crate::refresh::PendingRefresh;
use crate::reject::LocalReply;
use crate::token::Fingerprint;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through; on the response, set the expires-in header to this value.
    /// With `swap`, the request goes upstream with the new token instead of the old one, and
    /// the response hands the new tokens to the client.
    /// `headers`: edits to the request before it goes on (the configured claim headers:
    /// incoming copies removed, the verified token's values set). Empty when none are
    /// configured.
    Forward {
        expires_in: Option<u64>,
        swap: Option<Swap>,
        headers: Edits,
    },
    Deny(LocalReply),
    /// Hold the request, make this refresh call, then finish with `complete_refresh`.
    Refresh(Box<PendingRefresh>),
    /// Not decidable yet (a fresh process has not applied etcd's revocations; egress has no
    /// usable token): hold the request, at most `wait_ms`, and ask again.
    Hold {
        wait_ms: u64,
        reason: HoldReason,
        /// Hand back as `Request::verified` when asking again.
        verified: Option<[u8; 32]>,
    },
    /// Egress: put this header (the service's token) on the request and let it go.
    Inject {
        name: String,
        value: Secret,
    },
}

/// A header value holding a credential: Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Tokens a refresh produced, to put in the request (access token) and the response.
#[derive(Clone, PartialEq, Eq)]
pub struct Swap {
    pub access_token: String,
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Swap {
    /// Never prints the tokens: a Debug dump must not leak them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Swap({})", Fingerprint::of(&self.access_token).short())
    }
}

/// Why a request was held, for the 503 if the wait runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    RevocationStore,
    EgressToken,
    /// A provider's first remote key set has not arrived.
    KeysStartup,
    /// A token's kid is unknown; a refetch of the key set is under way.
    KeyRefetch,
}

impl HoldReason {
    pub fn timeout_response(self, host: &impl Host, challenge: &crate::reject::Challenge) -> LocalReply {
        match self {
            HoldReason::KeysStartup => {
                host.count(Counter::KeysUnavailable);
                crate::keys::unavailable_reply()
            }
            HoldReason::KeyRefetch => {
                // The refetch did not answer in time: decided on the keys there are.
                let code = crate::reject::RejectCode::InvalidSignature;
                host.count(Counter::Rejected(code));
                let rejection = crate::reject::Rejection::new(code, "no key matches the token's kid");
                crate::reject::invalid_token_response(challenge, &rejection)
            }
            HoldReason::RevocationStore => {
                crate::reject::unavailable_response("revocation data not loaded yet")
            }
            HoldReason::EgressToken => {
                host.count(Counter::EgressUnavailable);
                let mut r = Record::new(Event::EgressUnavailable, host.now());
                r.reason = Some("no usable token for an outgoing request; answered 503".into());
                audit::emit(host, r);
                crate::reject::error_reply(
                    503,
                    "egress_token_unavailable",
                    "no valid service token could be obtained; the request was not sent",
                )
            }
        }
    }
}
