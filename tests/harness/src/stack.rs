//! A whole local stack on loopback: issuer, upstream and a real Envoy loading the filter.

use serde_json::{json, Value};
use std::sync::OnceLock;

use crate::envoy::{self, ConfigForm, Envoy, Options};
use crate::http::{Client, Response};
use crate::issuer::{Issuer, MintRequest, DEFAULT_ISSUER};
use crate::upstream::Upstream;
use crate::IssuerKeys;

/// The demo issuer's committed keys: shared with `envoy/envoy.yaml` and the unit tests.
pub fn demo_keys() -> IssuerKeys {
    static TEXT: OnceLock<IssuerKeys> = OnceLock::new();
    let k = TEXT.get_or_init(|| {
        IssuerKeys::load(&envoy::repo_root().join("envoy/demo/issuer-keys.json")).expect("demo keys")
    });
    IssuerKeys::load_json(&k.to_json()).expect("demo keys")
}

/// The plugin configuration every e2e test starts from, merged with `extra` (top-level keys).
pub fn plugin_config(keys: &IssuerKeys, extra: &Value) -> Value {
    let mut cfg = json!({
        "providers": [{
            "issuer": DEFAULT_ISSUER,
            "audiences": ["api"],
            "algorithms": crate::keys::ALGORITHMS,
            "jwks": keys.filter_jwks(),
        }],
        "clock_skew_seconds": 0,
        "required_claims": ["exp", "iat", "sub"],
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    cfg
}

pub struct Stack {
    pub issuer: Issuer,
    pub upstream: Upstream,
    pub envoy: Envoy,
    /// One pooled connection: requests from it stay on one Envoy worker.
    pub client: Client,
}

impl Stack {
    pub fn start(extra: Value) -> Stack {
        Self::start_with(extra, ConfigForm::StringValue)
    }

    pub fn start_with(extra: Value, form: ConfigForm) -> Stack {
        let keys = demo_keys();
        let plugin = plugin_config(&keys, &extra);
        let issuer = Issuer::start(keys, DEFAULT_ISSUER, "127.0.0.1:0");
        let upstream = Upstream::start("127.0.0.1:0");
        let envoy = Envoy::start(&Options {
            plugin_config: plugin,
            form,
            upstream_port: upstream.port,
            issuer_port: issuer.port,
            concurrency: 2,
        });
        Stack { issuer, upstream, envoy, client: Client::new() }
    }

    /// Like `start`, with the listener from a file so `reconfigure` can change the plugin
    /// configuration of the running Envoy.
    pub fn start_dynamic(extra: Value) -> Stack {
        let keys = demo_keys();
        let plugin = plugin_config(&keys, &extra);
        let issuer = Issuer::start(keys, DEFAULT_ISSUER, "127.0.0.1:0");
        let upstream = Upstream::start("127.0.0.1:0");
        let envoy = Envoy::start_dynamic(&Options {
            plugin_config: plugin,
            form: ConfigForm::StringValue,
            upstream_port: upstream.port,
            issuer_port: issuer.port,
            concurrency: 2,
        });
        Stack { issuer, upstream, envoy, client: Client::new() }
    }

    /// Applies a new plugin configuration (same `vm_id`) to the running Envoy.
    pub fn reconfigure(&mut self, extra: Value) {
        let plugin = plugin_config(&demo_keys(), &extra);
        self.envoy.update_plugin_config(&Options {
            plugin_config: plugin,
            form: ConfigForm::StringValue,
            upstream_port: self.upstream.port,
            issuer_port: self.issuer.port,
            concurrency: 2,
        });
        self.client = Client::new(); // old connections keep the old filter chain
    }

    pub fn mint(&self, req: MintRequest) -> String {
        self.issuer.mint(&req)
    }

    /// GET through Envoy with `Authorization: Bearer <token>` when a token is given.
    pub fn get(&self, path: &str, token: Option<&str>) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        self.client.get(&self.envoy.url(path), &headers)
    }

    /// Audit records about one token.
    pub fn audits_for(&self, token: &str) -> Vec<Value> {
        let fp = crate::keys::fingerprint(token);
        self.envoy.audit_records().into_iter().filter(|r| r["token"] == fp.as_str()).collect()
    }
}
