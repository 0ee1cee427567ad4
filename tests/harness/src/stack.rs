//! A whole local stack on loopback: issuer, upstream and a real Envoy loading the filter.

use serde_json::{json, Value};
use std::sync::OnceLock;

use crate::envoy::{self, repo_root, wasm_path, ConfigForm, Envoy, Options};
use crate::etcd::Etcd;
use crate::http::{Client, Response};
use crate::issuer::{Issuer, MintRequest, DEFAULT_ISSUER};
use crate::profile::Profile;
use crate::target::{LogSource, Target};
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
    /// The plugin configuration Envoy runs with.
    pub profile: Profile,
    /// The revocation store, when Envoy runs with `revocation_store.etcd` (`start_on_etcd`).
    pub etcd: Option<Etcd>,
}

impl Stack {
    pub fn start(extra: Value) -> Stack {
        Self::start_with(extra, ConfigForm::StringValue)
    }

    pub fn start_with(extra: Value, form: ConfigForm) -> Stack {
        Self::start_prepared(extra, form, false, |_| {})
    }

    /// Like `start_with`; `plain_route` builds Envoy with one plain route to the upstream
    /// (see `Options::plain_route`), and `prepare` runs on the issuer before Envoy starts
    /// (to set controls that must hold from Envoy's first call, such as a token endpoint's `delay_ms`).
    pub fn start_prepared(
        extra: Value,
        form: ConfigForm,
        plain_route: bool,
        prepare: impl FnOnce(&Issuer),
    ) -> Stack {
        let keys = demo_keys();
        let plugin = plugin_config(&keys, &extra);
        let profile = Profile::of(&plugin);
        let issuer = Issuer::start(keys, DEFAULT_ISSUER, "127.0.0.1:0");
        prepare(&issuer);
        let upstream = Upstream::start("127.0.0.1:0");
        let envoy = Envoy::start(&Options {
            plugin_config: plugin,
            form,
            upstream_port: upstream.port,
            issuer_port: issuer.port,
            concurrency: 2,
            plain_route,
            etcd_port: None,
        });
        Stack { issuer, upstream, envoy, client: Client::new(), profile, etcd: None }
    }

    /// One Envoy with `revocation_store.etcd` (`fleet::store_config`, `store` merged into it)
    /// on a real etcd, and the admin API; `extra`: more top-level configuration. `prepare`
    /// runs on etcd before Envoy starts (to write revocations, or `stop` it: then Envoy starts
    /// while etcd is down, and `etcd().restart()` brings it back on the same port).
    pub fn start_on_etcd(extra: Value, store: Value, prepare: impl FnOnce(&Etcd)) -> Stack {
        let etcd = Etcd::start();
        prepare(&etcd);
        let mut cfg = crate::fleet::store_config(&store);
        for (k, v) in extra.as_object().into_iter().flatten() {
            cfg[k] = v.clone();
        }
        let keys = demo_keys();
        let plugin = plugin_config(&keys, &cfg);
        let profile = Profile::of(&plugin);
        let issuer = Issuer::start(keys, DEFAULT_ISSUER, "127.0.0.1:0");
        let upstream = Upstream::start("127.0.0.1:0");
        let envoy = Envoy::start(&Options {
            plugin_config: plugin,
            form: ConfigForm::StringValue,
            upstream_port: upstream.port,
            issuer_port: issuer.port,
            concurrency: 2,
            plain_route: false,
            etcd_port: Some(etcd.client_port),
        });
        Stack { issuer, upstream, envoy, client: Client::new(), profile, etcd: Some(etcd) }
    }

    /// The stack's etcd (`start_on_etcd`).
    pub fn etcd(&self) -> &Etcd {
        self.etcd.as_ref().expect("a stack started with start_on_etcd")
    }

    /// `envoy/envoy.yaml` as committed, with only its ports and the .wasm path moved so it
    /// cannot collide with a running `make run`.
    pub fn start_demo() -> Stack {
        let issuer = Issuer::start(demo_keys(), DEFAULT_ISSUER, "127.0.0.1:0");
        let upstream = Upstream::start("127.0.0.1:0");
        let text = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).expect("envoy.yaml");
        let moved = text
            .replace("port_value: 10000", "port_value: 0")
            .replace("port_value: 9901", "port_value: 0")
            .replace("port_value: 9101", &format!("port_value: {}", issuer.port))
            .replace("port_value: 9102", &format!("port_value: {}", upstream.port))
            .replace(
                "filename: target/wasm32-wasip1/release/tokenguard.wasm",
                &format!("filename: {}", wasm_path().display()),
            );
        assert_ne!(text, moved);
        let dir = envoy::scratch_dir();
        let cfg = dir.join("envoy.yaml");
        std::fs::write(&cfg, moved).expect("write envoy.yaml");
        let envoy = Envoy::start_file(&cfg, dir, 2).unwrap_or_else(|log| panic!("{log}"));
        Stack { issuer, upstream, envoy, client: Client::new(), profile: Profile::demo(), etcd: None }
    }

    /// What the scenarios may touch, on this stack's ports.
    pub fn target(&self) -> Target {
        Target::new(
            &self.envoy.url(""),
            &format!("http://127.0.0.1:{}", self.envoy.admin_port),
            &self.issuer.url(),
            &format!("http://127.0.0.1:{}", self.upstream.port),
            LogSource::File(self.envoy.log_path.clone()),
        )
    }

    /// Like `start`, with the listener from a file so `reconfigure` can change the plugin
    /// configuration of the running Envoy.
    pub fn start_dynamic(extra: Value) -> Stack {
        let keys = demo_keys();
        let plugin = plugin_config(&keys, &extra);
        let issuer = Issuer::start(keys, DEFAULT_ISSUER, "127.0.0.1:0");
        let upstream = Upstream::start("127.0.0.1:0");
        let profile = Profile::of(&plugin);
        let envoy = Envoy::start_dynamic(&Options {
            plugin_config: plugin,
            form: ConfigForm::StringValue,
            upstream_port: upstream.port,
            issuer_port: issuer.port,
            concurrency: 2,
            plain_route: false,
            etcd_port: None,
        });
        Stack { issuer, upstream, envoy, client: Client::new(), profile, etcd: None }
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
            plain_route: false,
            etcd_port: None,
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

    /// Logs in at the test issuer (`/oauth/login`): `ttl` seconds, `extra` merged into the
    /// request (sub, alg, sid, ...). Returns the access and refresh tokens it issued.
    pub fn login(&self, ttl: i64, extra: Value) -> Login {
        let mut body = json!({"sub": "alice", "alg": "ES256", "ttl": ttl});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let r = Client::new().post(&format!("{}/oauth/login", self.issuer.url()), &[], &body.to_string());
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let field =
            |name: &str| v[name].as_str().unwrap_or_else(|| panic!("no {name}: {}", r.body)).to_string();
        Login { access: field("access_token"), refresh: field("refresh_token") }
    }

    /// Tells the test issuer how to behave (`/control`: outages, delays, rotation...).
    pub fn control(&self, v: Value) {
        let r = Client::new().post(&format!("{}/control", self.issuer.url()), &[], &v.to_string());
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// GET /api on `client` with the access token as a bearer token and, when given, the
    /// refresh token in `x-refresh-token` (the default refresh token source).
    pub fn call(&self, client: &Client, access: &str, refresh: Option<&str>) -> Response {
        let auth = format!("Bearer {access}");
        let mut h = vec![("authorization", auth.as_str())];
        if let Some(r) = refresh {
            h.push(("x-refresh-token", r));
        }
        client.get(&self.envoy.url("/api"), &h)
    }
}

/// What the test issuer's login hands out.
pub struct Login {
    pub access: String,
    pub refresh: String,
}
