//! A fault proxy for the daemon tests: one TCP listener on 127.0.0.1 per directed link (the
//! connections node `i` dials to node `j`), forwarding to the target's peer address in a mode
//! the test changes while the nodes run:
//!
//! * [`Mode::Pass`]: bytes go through as they come;
//! * [`Mode::Delay`]: each chunk is held for a fixed time (order kept, throughput not capped);
//! * [`Mode::Drop`]: open connections are closed and new ones are closed at once (the nodes see
//!   the link fail and redial with backoff);
//! * [`Mode::Blackhole`]: connections stay open but nothing is forwarded either way (the nodes
//!   see a silent link).
//!
//! A partition sets [`Mode::Drop`] on every link between two groups, both directions; healing
//! sets [`Mode::Pass`] again. The proxies run on a runtime of their own (one worker thread), so
//! they keep forwarding while the test thread blocks; dropping [`FaultProxy`] stops them and
//! closes every connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a link does with the bytes of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Forward each chunk after this long.
    Delay(Duration),
    /// Close open connections; close new ones at once.
    Drop,
    /// Keep connections open, forward nothing.
    Blackhole,
}

struct Link {
    listen: SocketAddr,
    mode: watch::Sender<Mode>,
}

/// The proxies of a network: one per directed link (dialer, target).
pub struct FaultProxy {
    runtime: Option<tokio::runtime::Runtime>,
    links: BTreeMap<(usize, usize), Link>,
}

impl FaultProxy {
    /// A proxy for every ordered pair of `targets` (node index → its peer address), all in
    /// [`Mode::Pass`].
    pub fn new(targets: &[SocketAddr]) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        let mut links = BTreeMap::new();
        for (from, _) in targets.iter().enumerate() {
            for (to, target) in targets.iter().enumerate() {
                if from == to {
                    continue;
                }
                let listener = runtime
                    .block_on(TcpListener::bind("127.0.0.1:0"))
                    .expect("proxy listens");
                let listen = listener.local_addr().expect("proxy address");
                let (mode, rx) = watch::channel(Mode::Pass);
                runtime.spawn(accept(listener, *target, rx));
                links.insert((from, to), Link { listen, mode });
            }
        }
        Self {
            runtime: Some(runtime),
            links,
        }
    }

    /// The address node `from` dials to reach node `to`.
    pub fn address(&self, from: usize, to: usize) -> SocketAddr {
        self.links[&(from, to)].listen
    }

    /// Sets the mode of the link `from` → `to` (the connections `from` dials).
    pub fn set(&self, from: usize, to: usize, mode: Mode) {
        self.links[&(from, to)].mode.send_replace(mode);
    }

    /// Sets the mode of both links between `a` and `b`.
    pub fn set_pair(&self, a: usize, b: usize, mode: Mode) {
        self.set(a, b, mode);
        self.set(b, a, mode);
    }

    /// Sets every link.
    pub fn set_all(&self, mode: Mode) {
        for link in self.links.values() {
            link.mode.send_replace(mode);
        }
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for &i in a {
            for &j in b {
                self.set_pair(i, j, Mode::Drop);
            }
        }
    }

    /// Every link back to [`Mode::Pass`].
    pub fn heal(&self) {
        self.set_all(Mode::Pass);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<Mode>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *mode.borrow() == Mode::Drop {
            drop(client);
            continue;
        }
        let mode = mode.clone();
        tokio::spawn(async move {
            let Ok(Ok(server)) =
                tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await
            else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            // When one direction ends (or the link drops), both sockets are dropped: closed.
            tokio::select! {
                () = pump(cr, sw, mode.clone()) => {}
                () = pump(sr, cw, mode) => {}
            }
        });
    }
}

/// Copies `from` to `to` under the link's mode until either side closes or the link drops.
async fn pump<R, W>(mut from: R, mut to: W, mut mode: watch::Receiver<Mode>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Chunks with the instant they may be written: delays keep their order.
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                changed = mode.changed() => {
                    if changed.is_err() || *mode.borrow() == Mode::Drop {
                        return;
                    }
                }
                n = from.read(&mut buf) => {
                    let n = match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let at = match *mode.borrow() {
                        Mode::Drop => return,
                        Mode::Blackhole => continue,
                        Mode::Pass => Instant::now(),
                        Mode::Delay(d) => Instant::now() + d,
                    };
                    if queue.send((at, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let write = async {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = write => {}
    }
}
