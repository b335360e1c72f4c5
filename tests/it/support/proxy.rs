//! A loopback TCP proxy between srvd and etcd that can break the connection where a real network
//! would: cut everything and keep srvd out, or let srvd back and cut each new connection after a
//! given number of bytes from etcd (mid-stream, so a watch breaks during a catch-up).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct State {
    /// While false, new connections are accepted and dropped at once (etcd "unreachable").
    open: bool,
    /// Byte budgets (etcd → srvd) for the next connections, one each, in order.
    budgets: VecDeque<usize>,
    /// Cancelled by `cut`: every connection opened before it ends.
    generation: CancellationToken,
    /// Connections cut because their budget ran out.
    budget_cuts: usize,
}

/// A running proxy; its tasks end when it is dropped.
pub struct Proxy {
    /// The URL srvd connects to (`http://127.0.0.1:PORT`).
    pub url: String,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding 127.0.0.1:<free port> to `upstream` (an `http://host:port` URL).
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("upstream is http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            open: true,
            ..State::default()
        }));
        let accept = tokio::spawn(accept_loop(listener, upstream, state.clone()));
        Self { url, state, accept }
    }

    /// Closes every connection and refuses new ones until [`Proxy::open`].
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.open = false;
        state.generation.cancel();
        state.generation = CancellationToken::new();
    }

    /// Lets clients in again; the next connections are cut after `budgets[i]` bytes from etcd,
    /// later ones are not cut.
    pub fn open(&self, budgets: &[usize]) {
        let mut state = self.state.lock().unwrap();
        state.budgets = budgets.iter().copied().collect();
        state.open = true;
    }

    /// How many connections were cut by their budget so far.
    pub fn budget_cuts(&self) -> usize {
        self.state.lock().unwrap().budget_cuts
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.lock().unwrap().generation.cancel();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    while let Ok((client, _)) = listener.accept().await {
        let (open, budget, generation) = {
            let mut state = state.lock().unwrap();
            let budget = if state.open {
                state.budgets.pop_front()
            } else {
                None
            };
            (state.open, budget, state.generation.clone())
        };
        if !open {
            drop(client);
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let cut_by_budget = tokio::select! {
                () = generation.cancelled() => false,
                cut = forward(client, server, budget) => cut,
            };
            if cut_by_budget {
                state.lock().unwrap().budget_cuts += 1;
            }
        });
    }
}

/// Copies both ways until either side closes; returns whether etcd → client hit `budget`.
async fn forward(client: TcpStream, server: TcpStream, budget: Option<usize>) -> bool {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    };
    let down = async {
        let mut left = budget.unwrap_or(usize::MAX);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let send = n.min(left);
            if client_write.write_all(&buf[..send]).await.is_err() {
                return false;
            }
            left -= send;
            if left == 0 {
                return true;
            }
        }
    };
    tokio::select! {
        () = up => false,
        cut = down => cut,
    }
}
