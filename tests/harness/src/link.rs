//! A TCP relay between Envoy and etcd that a test can cut and heal: a network partition
//! with etcd still up, so writes can be made (and compacted) while the replicas are out of
//! touch, which stopping etcd cannot give.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Shared {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every relayed connection, to sever them on `cut`.
    open: Mutex<Vec<TcpStream>>,
}

/// Relays 127.0.0.1:`port` to 127.0.0.1:`to`; stops when dropped.
pub struct Link {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Link {
    pub fn start(to: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the link");
        let port = listener.local_addr().expect("link address").port();
        listener.set_nonblocking(true).expect("nonblocking accept");
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || accept(&listener, to, &s));
        Link { port, shared }
    }

    /// Severs every relayed connection and refuses new ones until `heal`.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for c in self.shared.open.lock().expect("link connections").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

fn accept(listener: &TcpListener, to: u16, s: &Arc<Shared>) {
    while !s.stop.load(Ordering::SeqCst) {
        let Ok((client, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if s.cut.load(Ordering::SeqCst) {
            continue; // dropped: the connection is closed at once
        }
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let ends = [client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone()];
        let [Ok(c1), Ok(s1), Ok(c2), Ok(s2)] = ends else { continue };
        s.open.lock().expect("link connections").extend([client, server]);
        std::thread::spawn(move || pipe(c1, s1));
        std::thread::spawn(move || pipe(s2, c2));
    }
}

/// Copies `from` to `to` until either side closes, then closes both directions.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
