//! The demo/test token issuer as a standalone process (for `make run` and compose).
//!
//!   tg-issuer serve [--listen ADDR] [--keys FILE] [--issuer URL]
//!   tg-issuer gen-keys FILE        write a fresh TEST-ONLY key file
//!   tg-issuer filter-jwks FILE     print the JWKS (with the HMAC secret) a filter config needs
//!   tg-issuer mint --keys FILE --alg ALG --count N --ttl SECONDS [--prefix P]
//!                                  print N distinct tokens, one a line (for benchmarks)

use std::path::PathBuf;
use tokenguard_harness::issuer::{Issuer, DEFAULT_ISSUER};
use tokenguard_harness::IssuerKeys;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exit = |msg: String| -> ! {
        eprintln!("tg-issuer: {msg}");
        std::process::exit(2)
    };
    match args.first().map(String::as_str) {
        Some("gen-keys") => {
            let path = args.get(1).cloned().unwrap_or_else(|| exit("gen-keys FILE".into()));
            let json = serde_json::to_string_pretty(&IssuerKeys::generate().to_json()).unwrap_or_default();
            std::fs::write(&path, json + "\n").unwrap_or_else(|e| exit(format!("{path}: {e}")));
        }
        Some("filter-jwks") => {
            let path = args.get(1).cloned().unwrap_or_else(|| exit("filter-jwks FILE".into()));
            let keys = IssuerKeys::load(&PathBuf::from(path)).unwrap_or_else(|e| exit(e));
            println!("{}", serde_json::to_string_pretty(&keys.filter_jwks()).unwrap_or_default());
        }
        Some("mint") => {
            let keys = match arg(&args, "--keys") {
                Some(p) => IssuerKeys::load(&PathBuf::from(p)).unwrap_or_else(|e| exit(e)),
                None => exit("mint needs --keys FILE".into()),
            };
            let alg = arg(&args, "--alg").unwrap_or("RS256".into());
            let count: usize = arg(&args, "--count").and_then(|c| c.parse().ok()).unwrap_or(1);
            let ttl: u64 = arg(&args, "--ttl").and_then(|c| c.parse().ok()).unwrap_or(3600);
            let prefix = arg(&args, "--prefix").unwrap_or("bench".into());
            let now = tokenguard_harness::keys::now();
            let mut out = String::new();
            for i in 0..count {
                let claims = serde_json::json!({"iss": DEFAULT_ISSUER, "sub": format!("{prefix}-{i}"), "aud": "api",
                    "iat": now, "exp": now + ttl, "jti": format!("{prefix}-{alg}-{i}")});
                out.push_str(&keys.sign(&alg, &claims, None).unwrap_or_else(|e| exit(e)));
                out.push('\n');
            }
            print!("{out}");
        }
        Some("serve") => {
            let listen = arg(&args, "--listen").unwrap_or("127.0.0.1:9101".into());
            let issuer = arg(&args, "--issuer").unwrap_or(DEFAULT_ISSUER.into());
            let keys = match arg(&args, "--keys") {
                Some(p) => IssuerKeys::load(&PathBuf::from(p)).unwrap_or_else(|e| exit(e)),
                None => IssuerKeys::generate(),
            };
            let server = Issuer::start(keys, &issuer, &listen);
            eprintln!("tg-issuer: {issuer} listening on {listen} (port {})", server.port);
            loop {
                std::thread::park();
            }
        }
        _ => exit("usage: tg-issuer serve|gen-keys|filter-jwks ...".into()),
    }
}
