//! A TCP proxy between client and server that a test can cut, and whose replies it can hold
//! back, to lose a connection at a chosen moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: JoinHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    /// While true, what the server sends is read but not passed on.
    hold: watch::Sender<bool>,
    connections: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            hold: watch::channel(false).0,
            connections: Mutex::new(Vec::new()),
        });
        let accepting = tokio::spawn(accept(listener, shared.clone()));
        Proxy {
            addr,
            shared,
            accepting,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/api/sync", self.addr)
    }

    /// From now on, nothing the server sends reaches the client (until [`Proxy::cut`]).
    pub fn hold_replies(&self) {
        self.shared.hold.send_replace(true);
    }

    /// Closes every connection through the proxy, with whatever it held back; new ones
    /// are accepted and passed on as usual.
    pub fn cut(&self) {
        let connections = std::mem::take(&mut *self.shared.connections.lock().unwrap());
        for connection in connections {
            connection.abort();
        }
        self.shared.hold.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let shared_for_task = shared.clone();
        // Registered under the lock that `cut` takes, so a cut never misses a connection.
        let mut connections = shared.connections.lock().unwrap();
        let handle = tasks.spawn(forward(client, shared_for_task));
        connections.push(handle);
        drop(connections);
        while tasks.try_join_next().is_some() {}
    }
}

async fn forward(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let mut hold = shared.hold.subscribe();
    let down = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n) = server_read.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            // Held bytes are never passed on: the cut that ends the hold drops them.
            if hold.wait_for(|held| !*held).await.is_err() {
                break;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}
