//! The plugin configuration in force, as far as scenarios need it: they derive their tokens
//! and waits from it, so one scenario runs under the local tests' configurations and under
//! `envoy/envoy.yaml` (which the compose stack runs).

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Session {
    pub max_lifetime: i64,
    pub start_claim: String,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub prefix: String,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub algorithms: Vec<String>,
    pub required_claims: Vec<String>,
    pub clock_skew: i64,
    pub near_expiry: i64,
    pub session: Option<Session>,
    pub max_token_lifetime: i64,
    pub expires_in_header: String,
    pub registry_capacity: u64,
    pub admin: Option<Admin>,
    /// The first provider's `remote_jwks.min_refetch_seconds` when it fetches its keys.
    pub remote_min_refetch: Option<u64>,
    /// `resource_metadata.resource`, when the RFC 9728 metadata is configured.
    pub resource: Option<String>,
    /// `routes` is configured (the route scenarios' `scenarios::routes::config()`).
    pub routes: bool,
}

impl Profile {
    /// Reads a plugin configuration (its JSON form), with the documented defaults for keys
    /// it leaves out (docs/configuration.md).
    pub fn of(config: &Value) -> Profile {
        let int = |v: &Value, default: i64| v.as_i64().unwrap_or(default);
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let session = config.get("session").map(|s| Session {
            max_lifetime: s["max_lifetime_seconds"].as_i64().expect("session.max_lifetime_seconds"),
            start_claim: s["start_claim"].as_str().unwrap_or("auth_time").to_string(),
        });
        let admin = config.get("admin").map(|a| Admin {
            prefix: a["path_prefix"].as_str().expect("admin.path_prefix").to_string(),
            token: a["token"].as_str().expect("admin.token").to_string(),
        });
        let required = config.get("required_claims").map(strings).unwrap_or_else(|| vec!["exp".into()]);
        Profile {
            algorithms: strings(&config["providers"][0]["algorithms"]),
            required_claims: required,
            clock_skew: int(&config["clock_skew_seconds"], 30),
            near_expiry: int(&config["near_expiry_warning_seconds"], 60),
            session,
            max_token_lifetime: int(&config["max_token_lifetime_seconds"], 86400),
            expires_in_header: config["expires_in_header"]
                .as_str()
                .unwrap_or("x-token-expires-in")
                .to_string(),
            registry_capacity: config["registry"]["capacity"].as_u64().unwrap_or(10_000),
            admin,
            remote_min_refetch: config["providers"][0]
                .get("remote_jwks")
                .map(|r| r["min_refetch_seconds"].as_u64().unwrap_or(30)),
            resource: config["resource_metadata"]["resource"].as_str().map(str::to_owned),
            routes: config.get("routes").is_some(),
        }
    }

    /// How every challenge starts: the realm and, with RFC 9728 metadata, where it is.
    pub fn challenge(&self) -> String {
        match &self.resource {
            None => "Bearer realm=\"tokenguard\"".into(),
            Some(r) => format!(
                "Bearer realm=\"tokenguard\", resource_metadata=\"{r}/.well-known/oauth-protected-resource\""
            ),
        }
    }

    /// `envoy/envoy.yaml`'s plugin configuration (and so the compose stack's);
    /// tests/compose_config.rs checks each value against the file.
    pub fn demo() -> Profile {
        let mut config = json!({
            "providers": [{"algorithms": ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
                           "remote_jwks": {"cluster": "issuer", "min_refetch_seconds": 5}}],
            "clock_skew_seconds": 30,
            "required_claims": ["exp", "iat", "sub"],
            "session": {"max_lifetime_seconds": 86400, "start_claim": "auth_time"},
            "near_expiry_warning_seconds": 60,
            "expires_in_header": "x-token-expires-in",
            "max_token_lifetime_seconds": 86400,
            "registry": {"capacity": 10000},
            "admin": {"path_prefix": "/tokenguard/", "token": "demo-admin-token-change-me"},
        });
        // The route scenarios' policy (tests/compose_config.rs checks the file holds it).
        if let (Some(c), Some(r)) = (config.as_object_mut(), crate::scenarios::routes::config().as_object()) {
            c.extend(r.clone());
        }
        Profile::of(&config)
    }

    pub fn allows(&self, alg: &str) -> bool {
        self.algorithms.iter().any(|a| a == alg)
    }

    /// The first of `preferred` the provider allows, else its first algorithm.
    pub fn alg(&self, preferred: &[&str]) -> String {
        preferred
            .iter()
            .find(|a| self.allows(a))
            .map(|a| a.to_string())
            .or_else(|| self.algorithms.first().cloned())
            .expect("a provider with algorithms")
    }

    pub fn admin(&self) -> &Admin {
        self.admin.as_ref().expect("this scenario needs the admin API configured")
    }
}
