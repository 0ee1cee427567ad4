//! Runs the end-to-end scenario suite against a running stack (the compose harness), under
//! `envoy/envoy.yaml`'s plugin configuration. Exits 1 when a scenario fails. With a second
//! replica and the etcd they share (`--envoy-b`, `--admin-b`, `--etcd`, and its log) the
//! fleet scenarios run too.
//!
//!   tg-scenarios --envoy URL --admin URL --issuer URL --upstream URL
//!                (--envoy-container NAME | --envoy-log FILE) [--only TEXT]
//!                [--envoy-b URL --admin-b URL --etcd URL
//!                 (--envoy-b-container NAME | --envoy-b-log FILE)]

use std::path::PathBuf;
use tokenguard_harness::profile::Profile;
use tokenguard_harness::scenarios::run_suite;
use tokenguard_harness::target::{LogSource, Target};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exit = |msg: &str| -> ! {
        eprintln!("tg-scenarios: {msg}");
        std::process::exit(2)
    };
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned());
    let url = |name: &str| arg(name).unwrap_or_else(|| exit(&format!("{name} URL is required")));
    let logs =
        |replica: &str| match (arg(&format!("--{replica}-container")), arg(&format!("--{replica}-log"))) {
            (Some(c), None) => LogSource::Docker(c),
            (None, Some(f)) => LogSource::File(PathBuf::from(f)),
            _ => exit(&format!(
                "exactly one of --{replica}-container NAME and --{replica}-log FILE is required"
            )),
        };
    let mut target =
        Target::new(&url("--envoy"), &url("--admin"), &url("--issuer"), &url("--upstream"), logs("envoy"));
    if arg("--envoy-b").is_some() {
        target = target.with_fleet(&url("--envoy-b"), &url("--admin-b"), &url("--etcd"), logs("envoy-b"));
    }
    let outcomes = run_suite(&target, &Profile::demo(), &arg("--only").unwrap_or_default());
    if outcomes.iter().any(|o| o.failure.is_some()) {
        std::process::exit(1);
    }
}
