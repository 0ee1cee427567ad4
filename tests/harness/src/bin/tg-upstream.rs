//! The demo/test upstream as a standalone process: echoes each request as JSON and reports
//! everything it received at `/__upstream/received`.
//!
//!   tg-upstream [--listen ADDR]

use tokenguard_harness::upstream::Upstream;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or("127.0.0.1:9102".into());
    let server = Upstream::start(&listen);
    eprintln!("tg-upstream: listening on {listen} (port {})", server.port);
    loop {
        std::thread::park();
    }
}
