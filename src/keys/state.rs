//! A provider's remote key set in shared data, process-wide: two keys per provider, the
//! small state every worker reads each tick, and the key set itself, read only when its
//! version changes.

use crate::config::{Provider, RemoteJwks};
use crate::host::SharedData;
use crate::registry::codec::{Reader, Writer};

/// Discovery is redone this often, and after `REDISCOVER_AFTER` failed key fetches in a row.
pub const REDISCOVER_SECONDS: u64 = 86_400;
pub const REDISCOVER_AFTER: u32 = 3;
/// Failed fetches back off from 1 s, doubling, to this.
pub const MAX_BACKOFF_SECONDS: u64 = 300;

/// Where a provider's keys stand, as audited on each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No key set yet, no failure yet.
    Loading,
    Ready,
    /// Past freshness, fetches failing: the last good keys still serve.
    Stale,
    /// No keys, or past `max_stale_seconds`: the provider's requests get a 503.
    Unavailable,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Status::Loading => 0,
            Status::Ready => 1,
            Status::Stale => 2,
            Status::Unavailable => 3,
        }
    }

    fn of(code: u8) -> Status {
        match code {
            1 => Status::Ready,
            2 => Status::Stale,
            3 => Status::Unavailable,
            _ => Status::Loading,
        }
    }
}

/// What the lease holder's call is fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetching {
    Nothing,
    Discovery,
    Jwks,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysState {
    /// Bumped whenever the set's content changes; 0 = no set yet.
    pub version: u64,
    /// Bumped whenever a fetch withdrew a kid: cached verifications are then redone.
    pub removals: u32,
    pub fetched_at: u64,
    pub fresh_until: u64,
    /// When the proactive refresh is due (before `fresh_until`, jittered).
    pub refresh_at: u64,
    pub lease_until: u64,
    pub fetching: Fetching,
    pub failures: u32,
    pub next_attempt_at: u64,
    /// A request met an unknown kid and waits for the refetch it asked for.
    pub miss_pending: bool,
    pub last_miss_at: u64,
    /// The discovered key set location (`authority` then `path`); empty when none.
    pub jwks_authority: String,
    pub jwks_path: String,
    pub discovered_at: u64,
    pub status: Status,
}

impl Default for KeysState {
    fn default() -> Self {
        KeysState {
            version: 0,
            removals: 0,
            fetched_at: 0,
            fresh_until: 0,
            refresh_at: 0,
            lease_until: 0,
            fetching: Fetching::Nothing,
            failures: 0,
            next_attempt_at: 0,
            miss_pending: false,
            last_miss_at: 0,
            jwks_authority: String::new(),
            jwks_path: String::new(),
            discovered_at: 0,
            status: Status::Loading,
        }
    }
}

const STATE_VERSION: u8 = 1;

impl KeysState {
    pub fn decode(bytes: &[u8]) -> KeysState {
        let mut r = Reader::new(bytes);
        (|| {
            if r.u8()? != STATE_VERSION {
                return None;
            }
            Some(KeysState {
                version: r.u64()?,
                removals: r.u32()?,
                fetched_at: r.u64()?,
                fresh_until: r.u64()?,
                refresh_at: r.u64()?,
                lease_until: r.u64()?,
                fetching: match r.u8()? {
                    1 => Fetching::Discovery,
                    2 => Fetching::Jwks,
                    _ => Fetching::Nothing,
                },
                failures: r.u32()?,
                next_attempt_at: r.u64()?,
                miss_pending: r.u8()? == 1,
                last_miss_at: r.u64()?,
                jwks_authority: r.long_str()?,
                jwks_path: r.long_str()?,
                discovered_at: r.u64()?,
                status: Status::of(r.u8()?),
            })
        })()
        .unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(STATE_VERSION);
        w.u64(self.version);
        w.u32(self.removals);
        w.u64(self.fetched_at);
        w.u64(self.fresh_until);
        w.u64(self.refresh_at);
        w.u64(self.lease_until);
        w.u8(match self.fetching {
            Fetching::Nothing => 0,
            Fetching::Discovery => 1,
            Fetching::Jwks => 2,
        });
        w.u32(self.failures);
        w.u64(self.next_attempt_at);
        w.u8(u8::from(self.miss_pending));
        w.u64(self.last_miss_at);
        w.long_str(&self.jwks_authority);
        w.long_str(&self.jwks_path);
        w.u64(self.discovered_at);
        w.u8(self.status.code());
        w.0
    }

    /// The status the clock says, given the last good set and `max_stale_seconds`.
    pub fn status_at(&self, remote: &RemoteJwks, now: u64) -> Status {
        if self.version == 0 {
            return if self.failures == 0 { Status::Loading } else { Status::Unavailable };
        }
        if now <= self.fresh_until {
            Status::Ready
        } else if now <= self.fresh_until.saturating_add(remote.max_stale_seconds) {
            Status::Stale
        } else {
            Status::Unavailable
        }
    }

    /// A fetch is due: the first set, the proactive refresh (not while backing off), or an
    /// unknown kid's refetch (which the rate limit already bounds).
    pub fn due(&self, now: u64) -> bool {
        if self.lease_until > now {
            return false;
        }
        let scheduled = self.version == 0 || now >= self.refresh_at;
        self.miss_pending || (scheduled && now >= self.next_attempt_at)
    }

    /// Discovery is needed first: no `uri` configured and no fresh discovered location.
    pub fn needs_discovery(&self, remote: &RemoteJwks, now: u64) -> bool {
        remote.uri.is_none()
            && (self.jwks_path.is_empty() || now >= self.discovered_at.saturating_add(REDISCOVER_SECONDS))
    }

    pub fn in_flight(&self, now: u64) -> bool {
        self.lease_until > now
    }
}

/// The shared-data keys of a provider, named after its issuer and key source so that a
/// configuration change that points elsewhere starts from nothing.
pub struct Keys {
    pub state: String,
    pub set: String,
}

impl Keys {
    pub fn of(provider: &Provider) -> Keys {
        let uri = provider.remote.as_ref().and_then(|r| r.uri.as_ref());
        let source = format!("{}|{}", provider.issuer, uri.map_or("discovery".into(), |u| format!("{u:?}")));
        let digest = hmac_sha256::Hash::hash(source.as_bytes());
        let id: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Keys { state: format!("tokenguard/jwks/{id}/state"), set: format!("tokenguard/jwks/{id}/set") }
    }
}

pub fn read(store: &impl SharedData, key: &str) -> KeysState {
    KeysState::decode(store.get(key).0.as_deref().unwrap_or_default())
}

/// The shared key set: its version and the JWKS body it was built from.
pub fn read_set(store: &impl SharedData, key: &str) -> Option<(u64, Vec<u8>)> {
    let bytes = store.get(key).0?;
    let (version, body) = bytes.split_at_checked(8)?;
    Some((u64::from_le_bytes(version.try_into().ok()?), body.to_vec()))
}

pub fn encode_set(version: u64, body: &[u8]) -> Vec<u8> {
    let mut out = version.to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// `seconds` minus up to a quarter, from `seed`: spreads processes that failed or fetched
/// together.
pub fn jittered(seconds: u64, seed: u64) -> u64 {
    let span = seconds / 4;
    seconds.saturating_sub(if span == 0 { 0 } else { seed % (span + 1) })
}

/// When to refresh a set fresh for `fresh_s` from `now`: in the last fifth of its
/// freshness, jittered, so the new set is in place before the old one goes stale.
pub fn refresh_at(now: u64, fresh_s: u64, seed: u64) -> u64 {
    let lead = fresh_s / 10 + seed % (fresh_s / 10 + 1);
    now.saturating_add(fresh_s.saturating_sub(lead))
}

pub fn backoff(failures: u32, seed: u64) -> u64 {
    jittered(crate::backoff::doubling(1, failures, MAX_BACKOFF_SECONDS), seed).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_garbage_is_empty() {
        let st = KeysState {
            version: 3,
            removals: 1,
            fetched_at: 10,
            fresh_until: 20,
            refresh_at: 18,
            lease_until: 11,
            fetching: Fetching::Jwks,
            failures: 2,
            next_attempt_at: 12,
            miss_pending: true,
            last_miss_at: 9,
            jwks_authority: "idp".into(),
            jwks_path: "/certs".into(),
            discovered_at: 5,
            status: Status::Stale,
        };
        assert_eq!(KeysState::decode(&st.encode()), st);
        assert_eq!(KeysState::decode(b"\x07garbage"), KeysState::default());
        assert_eq!(KeysState::decode(&st.encode()[..20]), KeysState::default());
    }

    #[test]
    fn timing_is_bounded() {
        for seed in 0..50 {
            let at = refresh_at(1000, 600, seed);
            assert!((1000 + 480..=1000 + 540).contains(&at), "{at}");
            let b = backoff(20, seed);
            assert!((225..=300).contains(&b), "{b}");
        }
        assert_eq!(backoff(1, 7), 1);
        assert!(backoff(3, 7) <= 4);
    }
}
