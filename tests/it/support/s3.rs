//! A real S3-compatible server (s3s-fs) on 127.0.0.1 inside the test process,
//! with switches the tests flip: stop/restart on the same port (store
//! outage), an artificial delay on every request (slow restores), and a gate
//! that holds requests until the test releases them (a store that answers
//! nothing for as long as the test needs, with no clock involved).

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use trusty_search::storage::store::Store;

pub const ACCESS_KEY: &str = "trusty-test";
pub const SECRET_KEY: &str = "trusty-test-secret";
pub const BUCKET: &str = "indexes";

/// Which requests the gate holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// None: every request is served.
    Nothing,
    /// Every request, listings and `CURRENT` included.
    Everything,
    /// The files of index versions, not their manifests nor anything else:
    /// a restore reads its pointers and starts downloading, then waits.
    BundleFiles,
}

impl Hold {
    fn holds(self, path: &str) -> bool {
        match self {
            Hold::Nothing => false,
            Hold::Everything => true,
            Hold::BundleFiles => path.contains("/versions/") && !path.ends_with("/manifest.json"),
        }
    }
}

pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    delay_ms: Arc<AtomicU64>,
    gate: Arc<watch::Sender<Hold>>,
    /// Requests the gate has held, released or not.
    held: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl S3Server {
    /// Starts on a free port with a fresh bucket under `root`.
    pub async fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut server = S3Server {
            addr: listener.local_addr().unwrap(),
            root: root.to_path_buf(),
            delay_ms: Arc::new(AtomicU64::new(0)),
            gate: Arc::new(watch::Sender::new(Hold::Nothing)),
            held: Arc::new(AtomicU64::new(0)),
            task: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let fs = s3s_fs::FileSystem::new(&self.root).unwrap();
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let (delay, gate, held) = (self.delay_ms.clone(), self.gate.clone(), self.held.clone());
        self.task = Some(tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let (delay, gate, held) = (delay.clone(), gate.clone(), held.clone());
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    let (delay, mut gate, held) = (delay.clone(), gate.subscribe(), held.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        if gate.borrow_and_update().holds(&path) {
                            held.fetch_add(1, Ordering::SeqCst);
                            // Err only when the server is gone, and its task with it.
                            let _ = gate.wait_for(|hold| !hold.holds(&path)).await;
                        }
                        let delay = delay.load(Ordering::Relaxed);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        hyper::service::Service::call(&service, req).await
                    }
                });
                let conn = http.serve_connection(TokioIo::new(socket), svc).into_owned();
                conns.spawn(async move {
                    let _ = conn.await;
                });
            }
        }));
    }

    /// The store URL the code under test uses.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}?endpoint=http://{}", self.addr)
    }

    /// Environment for processes (and this process) to authenticate.
    pub fn env() -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
        ]
    }

    /// Delays every request from now on by `d` (after the gate, if it holds it).
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Holds the requests `what` names, those waiting and those to come,
    /// until [`S3Server::release`] (or another `hold`) lets them through.
    /// Nothing times out at the gate: a held request waits as long as the
    /// test needs, however slow the machine.
    pub fn hold(&self, what: Hold) {
        self.gate.send_replace(what);
    }

    /// Lets every held request through, and serves the next ones at once.
    pub fn release(&self) {
        self.hold(Hold::Nothing);
    }

    /// How many requests the gate has held so far, released or not.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    /// Stops accepting and drops open connections (the store is "down").
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Path on disk of an object, for corrupting it behind the server's back.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A fresh S3 server in a temporary directory of its own, and a store on it
/// under `prefix`: where every test against real object storage starts.
pub struct S3Env {
    pub s3: S3Server,
    pub store_url: String,
    pub store: Store,
    /// Declared last so the server stops before its directory goes.
    pub dir: tempfile::TempDir,
}

pub async fn env(prefix: &str) -> S3Env {
    set_process_env();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let store_url = s3.url(prefix);
    let store = Store::open(&store_url).unwrap();
    S3Env {
        s3,
        store_url,
        store,
        dir,
    }
}

/// Sets the credentials in this process's environment once (tests share it).
pub fn set_process_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in S3Server::env() {
            // SAFETY: called once, before tests read the environment concurrently
            // in object_store builders; every test sets the same values.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var(k, v)
            };
        }
    });
}
