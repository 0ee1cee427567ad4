//! The process's one fetcher per provider: who fetches (the lease), what (discovery or the
//! key set), and what an answer does: swap in a validated set, or keep the last good one
//! and back off. Audits each state change once, counts every fetch and failure.

use crate::audit::{emit, Event, Record};
use crate::config::{HttpUrl, Provider, RemoteJwks};
use crate::host::{Host, Level};
use crate::metrics::Counter;
use crate::refresh::{Callout, Failure};
use crate::registry::update;

use super::parse::{self, Answer};
use super::state::{self, Fetching, Keys, KeysState, Status, REDISCOVER_AFTER};

/// The call to make now for `provider`, when one is due and this worker won the lease.
pub fn start(provider: &Provider, host: &impl Host, now: u64) -> Option<Callout> {
    let remote = provider.remote.as_ref()?;
    let keys = Keys::of(provider);
    let lease_until = crate::backoff::lease_until(now, remote.timeout_ms);
    let url = update(host, &keys.state, |bytes| {
        let mut st = KeysState::decode(bytes);
        if !st.due(now) {
            return None;
        }
        let (fetching, url) = target(remote, &st, now)?;
        st.lease_until = lease_until;
        st.fetching = fetching;
        Some((st.encode(), url))
    })
    .ok()
    .flatten()?;
    host.count(Counter::KeysFetches);
    Some(get(&remote.cluster, &url, remote.timeout_ms))
}

/// Discovery first when needed, else the configured or discovered key set.
fn target(remote: &RemoteJwks, st: &KeysState, now: u64) -> Option<(Fetching, HttpUrl)> {
    if st.needs_discovery(remote, now) {
        return Some((Fetching::Discovery, remote.discovery.clone()?));
    }
    let url = match &remote.uri {
        Some(u) => u.clone(),
        None => HttpUrl { authority: st.jwks_authority.clone(), path: st.jwks_path.clone() },
    };
    Some((Fetching::Jwks, url))
}

fn get(cluster: &str, url: &HttpUrl, timeout_ms: u64) -> Callout {
    Callout {
        cluster: cluster.to_owned(),
        headers: vec![
            (":method".into(), "GET".into()),
            (":path".into(), url.path.clone()),
            (":authority".into(), url.authority.clone()),
            ("accept".into(), "application/json".into()),
        ],
        body: Vec::new(),
        timeout_ms,
    }
}

/// Applies the answer to the call `start` made (or its failure). `seed` jitters timing.
pub fn finish(provider: &Provider, host: &impl Host, answer: Result<Answer, Failure>, seed: u64) {
    let Some(remote) = &provider.remote else { return };
    let keys = Keys::of(provider);
    let now = host.now();
    let st = state::read(host, &keys.state);
    let outcome = match st.fetching {
        Fetching::Discovery => answer
            .and_then(|a| parse::discovery_answer(&a, &provider.issuer))
            .map(|url| discovered(provider, remote, host, &keys, url, now)),
        Fetching::Jwks | Fetching::Nothing => answer
            .and_then(|a| parse::jwks_answer(a, &provider.algorithms))
            .map(|fetched| swap(provider, remote, host, &keys, fetched, now, seed)),
    };
    if let Err(failure) = outcome {
        failed(provider, remote, host, &keys, st.fetching, &failure, now, seed);
    }
}

fn discovered(
    provider: &Provider,
    remote: &RemoteJwks,
    host: &impl Host,
    keys: &Keys,
    url: HttpUrl,
    now: u64,
) {
    let expected = remote.discovery.as_ref().map(|d| d.authority.as_str()).unwrap_or_default();
    if url.authority != expected {
        // The cluster was set up for the issuer's host; a key server elsewhere needs its own
        // cluster and `uri`. Said loudly, and tried anyway: the cluster may reach both.
        host.log(
            Level::Error,
            &format!(
                "tokenguard: discovery for {} names jwks_uri host {:?}, not the issuer's host {expected:?}: \
                 cluster {:?} may not reach it; if key fetches fail, set remote_jwks.uri and a cluster for that host",
                provider.issuer, url.authority, remote.cluster
            ),
        );
    }
    let written = update(host, &keys.state, |bytes| {
        let mut st = KeysState::decode(bytes);
        st.jwks_authority = url.authority.clone();
        st.jwks_path = url.path.clone();
        st.discovered_at = now;
        st.lease_until = 0;
        st.fetching = Fetching::Nothing;
        // The key set next, at the following tick, whatever the backoff said.
        st.next_attempt_at = 0;
        st.refresh_at = st.refresh_at.min(now);
        Some((st.encode(), ()))
    });
    if written.is_err() {
        host.count(Counter::RegistryConflict);
    }
}

/// A validated set replaces the shared one when its content changed; either way the
/// freshness restarts and failures are forgotten.
fn swap(
    provider: &Provider,
    remote: &RemoteJwks,
    host: &impl Host,
    keys: &Keys,
    fetched: parse::Fetched,
    now: u64,
    seed: u64,
) {
    let fresh_s = parse::freshness(fetched.cache_control.as_deref(), remote.cache_seconds);
    let current = state::read_set(host, &keys.set);
    let old_kids = current
        .as_ref()
        .and_then(|(_, body)| parse::jwks(body, &provider.algorithms).ok())
        .map(|(k, _)| k.kids())
        .unwrap_or_default();
    let changed = current.as_ref().is_none_or(|(_, body)| *body != fetched.body);
    let new_kids = fetched.keys.kids();
    let removed: Vec<String> = old_kids.iter().filter(|k| !new_kids.contains(k)).cloned().collect();
    let added: Vec<String> = new_kids.iter().filter(|k| !old_kids.contains(k)).cloned().collect();
    // The set is written before the state names its version, so a worker that sees the new
    // version always finds the set (only the lease holder writes either).
    let version = state::read(host, &keys.state).version.max(current.as_ref().map_or(0, |(v, _)| *v));
    let version = if changed { version.saturating_add(1) } else { version };
    if changed && host.set(&keys.set, &state::encode_set(version, &fetched.body), None).is_err() {
        return host.count(Counter::RegistryConflict);
    }
    let withdrawn = changed && !removed.is_empty();
    let mut before = KeysState::default();
    let written = update(host, &keys.state, |bytes| {
        let mut st = KeysState::decode(bytes);
        before = st.clone();
        st.version = version;
        if withdrawn {
            st.removals = st.removals.wrapping_add(1);
        }
        st.fetched_at = now;
        st.fresh_until = now.saturating_add(fresh_s);
        st.refresh_at = state::refresh_at(now, fresh_s, seed);
        st.lease_until = 0;
        st.fetching = Fetching::Nothing;
        st.failures = 0;
        st.next_attempt_at = 0;
        st.miss_pending = false;
        st.status = Status::Ready;
        Some((st.encode(), ()))
    });
    if written.is_err() {
        host.count(Counter::RegistryConflict);
    }
    if withdrawn && written.is_ok() {
        // Every worker's hot path must drop what it verified under a withdrawn key before
        // its next request, not at its next tick (`WorkerKeys::follow`).
        host.note_change();
    }
    if fetched.skipped > 0 {
        host.log(
            Level::Warn,
            &format!(
                "tokenguard: {} key(s) in {}'s key set are unusable and ignored",
                fetched.skipped, provider.issuer
            ),
        );
    }
    if before.status != Status::Ready {
        audit(
            host,
            Event::KeysReady,
            provider,
            now,
            format!("{} key(s), fresh for {fresh_s}s", new_kids.len()),
        );
    }
    if changed && before.version > 0 {
        let reason = format!("kids added {added:?}, removed {removed:?}");
        audit(host, Event::KeysRotated, provider, now, reason);
    }
}

#[allow(clippy::too_many_arguments)]
fn failed(
    provider: &Provider,
    remote: &RemoteJwks,
    host: &impl Host,
    keys: &Keys,
    fetching: Fetching,
    failure: &Failure,
    now: u64,
    seed: u64,
) {
    let failures = update(host, &keys.state, |bytes| {
        let mut st = KeysState::decode(bytes);
        st.failures = st.failures.saturating_add(1);
        st.next_attempt_at = now.saturating_add(state::backoff(st.failures, seed));
        st.lease_until = 0;
        st.fetching = Fetching::Nothing;
        // The requests waiting on it are decided on the keys there are.
        st.miss_pending = false;
        if remote.uri.is_none() && st.failures.is_multiple_of(REDISCOVER_AFTER) {
            st.jwks_path.clear(); // the key server may have moved: ask discovery again
        }
        Some((st.encode(), st.failures))
    })
    .ok()
    .flatten()
    .unwrap_or(1);
    host.count(Counter::KeysFailure(failure.kind()));
    if failures == 1 {
        let what = if fetching == Fetching::Discovery { "discovery" } else { "key set fetch" };
        host.log(
            Level::Warn,
            &format!(
                "tokenguard: {what} for {} failed: {}; keeping the last good keys and backing off",
                provider.issuer,
                failure.cause()
            ),
        );
    }
}

/// Moves the shared status to what the clock says (Ready -> Stale -> Unavailable while
/// fetches fail), auditing each change once per process: the CAS lets one worker win.
pub fn observe(provider: &Provider, host: &impl Host, st: &KeysState, now: u64) {
    let Some(remote) = &provider.remote else { return };
    let status = st.status_at(remote, now);
    if status == st.status || status == Status::Ready {
        return; // Ready is only ever set by a successful fetch
    }
    let keys = Keys::of(provider);
    let changed = update(host, &keys.state, |bytes| {
        let mut cur = KeysState::decode(bytes);
        let status = cur.status_at(remote, now);
        if status == cur.status || status == Status::Ready {
            return None;
        }
        cur.status = status;
        Some((cur.encode(), (status, cur.fresh_until, cur.failures)))
    });
    if let Ok(Some((status, fresh_until, failures))) = changed {
        let (event, reason) = match status {
            Status::Stale => (
                Event::KeysStale,
                format!(
                    "key set expired {}s ago; {failures} fetch(es) failed; serving the last good keys",
                    now.saturating_sub(fresh_until)
                ),
            ),
            _ => (
                Event::KeysUnavailable,
                format!("no usable key set ({failures} fetch(es) failed); the provider's requests get 503"),
            ),
        };
        audit(host, event, provider, now, reason);
    }
}

fn audit(host: &impl Host, event: Event, provider: &Provider, now: u64, reason: String) {
    let mut r = Record::new(event, now);
    r.reason = Some(format!("{}: {reason}", provider.issuer));
    emit(host, r);
}
