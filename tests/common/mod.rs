//! Test support: fresh stores (a temp SQLite file, or a fresh database on a
//! real PostgreSQL), services over them, and the real server on port 0.
//!
//! PostgreSQL comes from `DATABASE_URL` when set; otherwise a throwaway
//! server is started from the installed binaries (`initdb`, `postgres`) and
//! stopped when the test process exits. If neither works the test fails and
//! says what to install. Postgres tests never skip.
#![allow(dead_code)]

pub mod golden;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use association_service::config::Settings;
use association_service::domain::ObjectType;
use association_service::server;
use association_service::service::{
    AssociationService, BatchListRequest, ExportRequest, ListRequest, PortalPair, ServiceSettings,
};
use association_service::store::{self, Store};
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A store under test and what keeps it alive.
pub struct TestStore {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// The same store for another server (a second replica); the first
    /// keeps it alive.
    pub fn shared(&self) -> TestStore {
        TestStore {
            url: self.url.clone(),
            _dir: None,
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}_{}_{n}", std::process::id())
}

/// A fresh, empty store of the named backend ("sqlite", "postgres", or
/// "citus": a database on the throwaway Citus cluster's coordinator).
pub async fn fresh_store(backend: &str) -> TestStore {
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/associations.db", dir.path().display());
            TestStore {
                url,
                _dir: Some(dir),
            }
        }
        "postgres" => TestStore {
            url: fresh_postgres_database().await,
            _dir: None,
        },
        "citus" => TestStore {
            url: fresh_citus_database().await,
            _dir: None,
        },
        other => panic!("unknown backend {other}"),
    }
}

/// Opens and migrates the store.
pub async fn open(test_store: &TestStore) -> Arc<dyn Store> {
    // On the Citus cluster the suites run as a replica routed to the
    // workers would (tests/citus.rs holds the coordinator-only path).
    let options = store::StoreOptions {
        route_to_workers: on_citus(&test_store.url),
        ..store::StoreOptions::defaults(16)
    };
    let store = store::connect_with(&test_store.url, &options)
        .await
        .expect("connect to the test store");
    store.migrate().await.expect("migrate the test store");
    store
}

/// Service settings for tests: the given ceiling and chunk size.
pub fn settings(platform_ceiling: u32, read_chunk_size: u32) -> ServiceSettings {
    ServiceSettings {
        platform_ceiling,
        read_chunk_size,
        cursor_secret: "test-suite-cursor-secret".into(),
        feed_poll_interval: Duration::from_millis(200),
        catalog_ttl: Duration::from_secs(1),
        max_streams_per_portal: 256,
        stream_stall_timeout: Duration::from_secs(10),
    }
}

/// A service over a fresh store of `backend`.
pub async fn service(
    backend: &str,
    settings: ServiceSettings,
) -> (Arc<AssociationService>, TestStore) {
    let test_store = fresh_store(backend).await;
    let store = open(&test_store).await;
    (
        Arc::new(AssociationService::new(store, settings)),
        test_store,
    )
}

/// The real server, listening on an ephemeral port.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Where the REST gateway listens.
    pub http_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub store: TestStore,
}

impl TestServer {
    /// Starts the server on a fresh store of `backend`.
    pub async fn start(backend: &str, configure: impl FnOnce(&mut Settings)) -> TestServer {
        TestServer::start_on(fresh_store(backend).await, configure).await
    }

    /// Starts the server on an existing store (e.g. one a stopped server used).
    pub async fn start_on(
        test_store: TestStore,
        configure: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let mut settings = Settings::load(None).expect("default settings");
        settings.store.url = test_store.url.clone();
        configure(&mut settings);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let http_addr = http.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel();
        // Open the store before serving so a broken store fails the test here.
        server::open_store(&settings).await.expect("open the store");
        let task = tokio::spawn(async move {
            let listeners = server::Listeners {
                grpc: listener,
                http,
                metrics: None,
            };
            server::serve(settings, listeners, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            addr,
            http_addr,
            shutdown: Some(tx),
            task: Some(task),
            store: test_store,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connected gRPC channel to the server.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.endpoint())
            .expect("a valid endpoint")
            .connect()
            .await
            .expect("the server accepts connections")
    }

    /// The REST gateway's base URL.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.stop_keeping_store().await;
    }

    /// Stops the server and waits for it; the store stays for another start.
    pub async fn stop_keeping_store(mut self) -> TestStore {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
        self.store
    }
}

// ------------------------------------------------------------- PostgreSQL

struct Throwaway {
    admin_url: String,
    // Closing this pipe (when the test process exits) stops the server.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
    _dir: tempfile::TempDir,
}

static POSTGRES: OnceLock<Result<String, String>> = OnceLock::new();
static DURABLE_POSTGRES: OnceLock<Result<String, String>> = OnceLock::new();

/// The admin URL of a throwaway PostgreSQL at production durability (fsync
/// and synchronous_commit on, `pg_stat_statements` loaded), for the
/// benchmark's headline; `BENCH_DATABASE_URL` names an existing one instead.
pub fn durable_postgres_admin_url() -> String {
    let result = DURABLE_POSTGRES.get_or_init(|| {
        if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
            return Ok(url);
        }
        start_throwaway(true, &[], "").map(|t| {
            let url = t.admin_url.clone();
            Box::leak(Box::new(t));
            url
        })
    });
    match result {
        Ok(url) => url.clone(),
        Err(why) => panic!("cannot start a durable PostgreSQL: {why}"),
    }
}

/// The admin URL of the PostgreSQL the tests use.
fn postgres_admin_url() -> String {
    let result = POSTGRES.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(url);
        }
        start_throwaway(false, &[], "").map(|t| {
            let url = t.admin_url.clone();
            // Kept for the life of the process.
            Box::leak(Box::new(t));
            url
        })
    });
    match result {
        Ok(url) => url.clone(),
        Err(why) => panic!(
            "PostgreSQL tests need a server: set DATABASE_URL=postgres://… or install PostgreSQL's \
             server binaries (Debian: apt-get install postgresql) so a throwaway one can be started. {why}"
        ),
    }
}

fn postgres_bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no /usr/lib/postgresql ({e})"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".to_string())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
fn pg_command(bin: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin).args(args);
        cmd
    } else {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        cmd
    }
}

/// Starts a PostgreSQL of our own: `durable` keeps fsync and
/// synchronous_commit on (production settings), otherwise both are off;
/// `libraries` are preloaded (before `pg_stat_statements`, which a durable
/// one loads), `extra` are more `-c` options.
fn start_throwaway(durable: bool, libraries: &[&str], extra: &str) -> Result<Throwaway, String> {
    let bin = postgres_bin_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("assoc-pg")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        if !status.map(|s| s.success()).unwrap_or(false) {
            return Err("cannot hand the data directory to the postgres user".into());
        }
    }
    let data_str = data.to_str().ok_or("non-UTF-8 temp path")?;
    let out = pg_command(
        &bin.join("initdb"),
        &["-D", data_str, "-U", "postgres", "-A", "trust", "--no-sync"],
    )
    .output()
    .map_err(|e| format!("initdb failed to run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let postgres = bin.join("postgres");
    let mut preload = libraries.to_vec();
    let durability = if durable {
        preload.push("pg_stat_statements");
        "-c pg_stat_statements.track=all"
    } else {
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    };
    let preload = match preload.is_empty() {
        true => String::new(),
        false => format!("-c shared_preload_libraries={}", preload.join(",")),
    };
    // A free port is only free until someone takes it: when our server
    // cannot bind it (it exits), start again on another.
    for _ in 0..5 {
        let port = free_port().map_err(|e| e.to_string())?;
        let pid_file = dir.path().join("postgres.pid");
        let _ = std::fs::remove_file(&pid_file);
        // Once it served, the shell removes the data when it stops.
        let served = dir.path().join("served");
        let script = format!(
            "{} -D {data_str} -p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             {durability} {preload} {extra} -c max_connections=300 & pg=$!; echo $pg > {}; \
             read _; kill -INT $pg; wait $pg; [ -f {} ] && rm -rf {}",
            postgres.display(),
            dir.path().display(),
            pid_file.display(),
            served.display(),
            dir.path().display()
        );
        let mut shell = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        let mut child = shell
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        match wait_until_serving(&data, port, &pid_file) {
            Ok(()) => {
                std::fs::write(&served, "").map_err(|e| e.to_string())?;
                return Ok(Throwaway {
                    admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                    _stdin: Mutex::new(stdin),
                    _child: Mutex::new(child),
                    _dir: dir,
                });
            }
            Err(Exited) => {
                drop(stdin);
                let _ = child.wait();
            }
        }
    }
    Err("the throwaway PostgreSQL could not bind a port in 5 tries".into())
}

/// Ports the next throwaway servers of this process try before asking the
/// kernel for one (tests/harness.rs forces a collision this way).
static PORTS_FIRST: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Makes the next throwaway server try `port` first.
pub fn try_port_first(port: u16) {
    PORTS_FIRST.lock().unwrap().push(port);
}

/// How many ports given to `try_port_first` are still untried.
pub fn ports_first_left() -> usize {
    PORTS_FIRST.lock().unwrap().len()
}

/// A port nobody listened on a moment ago (or one a test asked for).
fn free_port() -> std::io::Result<u16> {
    if let Some(port) = PORTS_FIRST.lock().unwrap().pop() {
        return Ok(port);
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The server exited before it served (its port was taken).
struct Exited;

/// Waits until the PostgreSQL whose pid is written to `pid_file` says, in
/// its data directory's `postmaster.pid`, that it is ready on `port`, or
/// exits; panics after 60 s. (Asking the port instead could find another
/// server that holds it.)
fn wait_until_serving(data: &Path, port: u16, pid_file: &Path) -> Result<(), Exited> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pid = std::fs::read_to_string(pid_file).unwrap_or_default();
        let pid = pid.trim();
        // Gone, or a zombie its shell has not waited for.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let exited = state
            .rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !pid.is_empty() && exited {
            return Err(Exited);
        }
        // Lines: pid, data directory, start time, port, socket directory,
        // listen address, shared memory key, status.
        let status = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
        let lines: Vec<&str> = status.lines().map(str::trim).collect();
        if lines.len() >= 8 && lines[3] == port.to_string() && lines[7] == "ready" {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "the throwaway PostgreSQL did not become ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `url` names a database on a Citus cluster this process started.
pub fn on_citus(url: &str) -> bool {
    [&CITUS, &DURABLE_CITUS]
        .iter()
        .filter_map(|cell| cell.get()?.as_ref().ok())
        .any(|cluster| {
            let (base, _) = cluster.coordinator.rsplit_once('/').unwrap();
            url.starts_with(&format!("{base}/"))
        })
}

/// A throwaway Citus cluster, started once per test process: a coordinator
/// and two workers, each a PostgreSQL with the `citus` library (fsync off,
/// 4 shards a table, logical WAL for shard moves); their admin URLs.
pub struct CitusCluster {
    pub coordinator: String,
    pub workers: Vec<String>,
}

static CITUS: OnceLock<Result<CitusCluster, String>> = OnceLock::new();
static DURABLE_CITUS: OnceLock<Result<CitusCluster, String>> = OnceLock::new();

/// The test process's Citus cluster; fails saying how to install Citus.
pub fn citus_cluster() -> &'static CitusCluster {
    start_citus(&CITUS, false)
}

/// A Citus cluster at production durability (fsync and synchronous_commit
/// on on every node), for the benchmarks.
pub fn durable_citus_cluster() -> &'static CitusCluster {
    start_citus(&DURABLE_CITUS, true)
}

fn start_citus(
    cell: &'static OnceLock<Result<CitusCluster, String>>,
    durable: bool,
) -> &'static CitusCluster {
    let result = cell.get_or_init(|| {
        let bin = postgres_bin_dir()?;
        let library = bin.with_file_name("lib").join("citus.so");
        if !library.exists() {
            return Err(format!(
                "no {}: install Citus with `bash ../shared/citus/install.sh` (builds Citus 13.2.2 into PostgreSQL 15; needs root)",
                library.display()
            ));
        }
        let mut urls = Vec::new();
        for _ in 0..3 {
            let node = start_throwaway(
                durable,
                &["citus"],
                "-c citus.shard_count=4 -c wal_level=logical -c max_prepared_transactions=100",
            )?;
            urls.push(node.admin_url.clone());
            Box::leak(Box::new(node));
        }
        let coordinator = urls.remove(0);
        Ok(CitusCluster {
            coordinator,
            workers: urls,
        })
    });
    match result {
        Ok(cluster) => cluster,
        Err(why) => panic!("the Citus tests need a Citus cluster: {why}"),
    }
}

/// The port of an admin URL (`postgres://postgres@127.0.0.1:PORT/postgres`).
pub fn url_port(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port in the URL")
}

/// A new empty database on every node of the test Citus cluster, with the
/// extension and the workers added; the coordinator's URL.
pub async fn fresh_citus_database() -> String {
    let cluster = tokio::task::spawn_blocking(citus_cluster)
        .await
        .expect("Citus setup");
    fresh_database_on_citus(cluster).await
}

/// A new empty database on every node of `cluster`, as `fresh_citus_database`.
pub async fn fresh_database_on_citus(cluster: &CitusCluster) -> String {
    // One database is set up at a time: adding the workers to several at
    // once failed now and then ("failure on connection marked as
    // essential").
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let coordinator = fresh_database_on(&cluster.coordinator).await;
    let name = coordinator.rsplit('/').next().unwrap().to_string();
    let mut nodes = vec![coordinator.clone()];
    for worker in &cluster.workers {
        let mut admin = sqlx::PgConnection::connect(worker).await.expect("a worker");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the database on a worker");
        let _ = admin.close().await;
        let (base, _) = worker.rsplit_once('/').unwrap();
        nodes.push(format!("{base}/{name}"));
    }
    for node in &nodes {
        let mut conn = sqlx::PgConnection::connect(node).await.expect("a node");
        sqlx::query("CREATE EXTENSION citus")
            .execute(&mut conn)
            .await
            .expect("CREATE EXTENSION citus");
        let _ = conn.close().await;
    }
    let mut conn = sqlx::PgConnection::connect(&coordinator).await.unwrap();
    sqlx::query("SELECT citus_set_coordinator_host('127.0.0.1', $1)")
        .bind(i32::from(url_port(&cluster.coordinator)))
        .execute(&mut conn)
        .await
        .expect("citus_set_coordinator_host");
    for worker in &cluster.workers {
        // A failed add changes nothing; three tries at most.
        let mut tries = 0;
        while let Err(err) = sqlx::query("SELECT citus_add_node('127.0.0.1', $1)")
            .bind(i32::from(url_port(worker)))
            .execute(&mut conn)
            .await
        {
            tries += 1;
            assert!(tries < 3, "citus_add_node failed {tries} times: {err}");
        }
    }
    let _ = conn.close().await;
    coordinator
}

/// Creates a new empty database and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let admin_url = tokio::task::spawn_blocking(postgres_admin_url)
        .await
        .expect("postgres setup");
    fresh_database_on(&admin_url).await
}

/// Creates a new empty database on the server `admin_url` names. On a
/// server the tests did not start (`DATABASE_URL`, `BENCH_DATABASE_URL`)
/// it is dropped when the process ends, pass or fail, and the first one
/// made also drops those of test processes that are gone (killed ones).
pub async fn fresh_database_on(admin_url: &str) -> String {
    let admin_url = admin_url.to_string();
    let name = unique_name("assoc_test");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {admin_url}: {e}"));
    let external = ["DATABASE_URL", "BENCH_DATABASE_URL"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|url| url == admin_url));
    if external {
        sweep_databases_of_gone_processes(&mut admin).await;
    }
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    if external {
        drop_at_exit(&admin_url, &name);
    }
    let _ = admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("database url has a path");
    format!("{base}/{name}")
}

/// Databases made on servers the tests did not start, for `drop_created`.
static CREATED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn drop_at_exit(admin_url: &str, name: &str) {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain function with the C library, once.
    REGISTERED.call_once(|| unsafe {
        libc::atexit(drop_created);
    });
    CREATED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((admin_url.to_string(), name.to_string()));
}

/// Drops every database `fresh_database_on` made on an outside server (at
/// exit, whether tests passed or failed).
extern "C" fn drop_created() {
    let created = std::mem::take(&mut *CREATED.lock().unwrap_or_else(|e| e.into_inner()));
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        for (admin_url, name) in created {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(&drop).execute(&mut admin).await;
                let _ = admin.close().await;
            }
        }
    });
}

/// Drops the test databases (`assoc_test_<pid>_<n>`) of processes that no
/// longer run, once per process.
async fn sweep_databases_of_gone_processes(admin: &mut sqlx::PgConnection) {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'assoc\\_test\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .expect("list the test databases");
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u64>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut *admin)
                .await;
        }
    }
}

// ------------------------------------------------------------- tokens

/// A concrete path for a REST route pattern (`REST_ROUTES`).
#[allow(dead_code)]
pub fn concrete_path(pattern: &str) -> String {
    pattern
        .replace("{object_type}", "contacts")
        .replace("{from}", "contacts")
        .replace("{to}", "companies")
        .replace("{id}", "1")
        .replace("{to_id}", "2")
        .replace("{type_id}", "1000")
        .replace("{association_type}", "contact_to_company")
}

/// The token text of a test principal.
pub fn token_for(name: &str) -> String {
    format!("{name}-test-token")
}

/// The issuer and audience the test servers accept JWTs from and for.
pub const JWT_ISSUER: &str = "https://issuer.test";
pub const JWT_AUDIENCE: &str = "association-service";
const JWT_SECRET: &str = "a test-only HS256 secret, 32+ bytes long";

/// Accepts HS256 JWTs signed with the test secret (`jwt`).
#[allow(dead_code)]
pub fn accept_jwt(settings: &mut Settings) {
    let secret = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jwt-test-secret");
    std::fs::write(&secret, JWT_SECRET).expect("write the JWT secret");
    settings.auth.jwt = Some(association_service::auth::JwtSettings {
        issuer: JWT_ISSUER.into(),
        audience: JWT_AUDIENCE.into(),
        keys_file: None,
        secret_file: Some(secret),
        leeway_seconds: 0,
    });
}

/// The claims of a test JWT for `sub` on `portals` with `roles`, valid for
/// the next hour.
#[allow(dead_code)]
pub fn jwt_claims(sub: &str, portals: &[i64], roles: &[&str]) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({
        "sub": sub,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "portals": portals,
        "roles": roles,
    })
}

/// `claims` signed with the test secret (HS256).
#[allow(dead_code)]
pub fn jwt(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign a JWT")
}

/// `message` as a call made with `name`'s token (`token_for`).
pub fn with_token<T>(message: T, name: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let bearer = format!("Bearer {}", token_for(name));
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().expect("a header value"));
    request
}

/// SplitMix64: a small seedable generator for randomized tests.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `variable` when set (to replay a run), else from the clock.
    pub fn from_env(variable: &str) -> (Rng, u64) {
        let seed = std::env::var(variable)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        (Rng(seed), seed)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// Gives each name a token (`token_for`) with every role; on `portals`, or
/// on every portal when empty.
pub fn grant(settings: &mut Settings, names: &[&str], portals: &[i64]) {
    for name in names {
        settings
            .auth
            .tokens
            .push(association_service::auth::TokenConfig {
                name: name.to_string(),
                sha256: association_service::auth::token_hash(&token_for(name)),
                portals: portals.to_vec(),
                all_portals: portals.is_empty(),
                roles: vec!["read".into(), "write".into(), "admin".into()],
            });
    }
}

// ------------------------------------------------------------- HTTP client

/// A REST answer: status, headers (lower-case names) and body text.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Sends one HTTP/1.1 request to the gateway and reads the whole answer
/// (the connection is closed by the request, so the body ends at EOF).
impl HttpAnswer {
    /// A header's value (names compared in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> HttpAnswer {
    http_as(addr, method, path, body, None).await
}

/// `http` with `Authorization: Bearer <token>` when a token is given.
pub async fn http_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> HttpAnswer {
    let body = body.unwrap_or("");
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the gateway");
    http_over(stream, request.as_bytes())
        .await
        .expect("an HTTP answer")
}

/// Sends `request` as it is over `stream` and reads until the server closes:
/// the answer, or none when it closed without one.
#[allow(dead_code)]
pub async fn http_over(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    request: &[u8],
) -> Option<HttpAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.expect("send");
    let mut raw = Vec::new();
    // A server that closes while the request is still being sent resets the
    // connection; what it answered before is kept.
    if let Err(err) = stream.read_to_end(&mut raw).await {
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset,
            "reading the answer: {err}"
        );
    }
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Some(HttpAnswer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&tail[..size]);
        rest = &tail[size + 2..];
    }
    out
}

/// A portal's object type pair named by text (ids or names), for tests.
pub fn pair(portal: i64, from: &str, to: &str) -> PortalPair {
    PortalPair::parse(portal, from, to).expect("a valid portal and object types")
}

/// Two object types named by text.
pub fn types(from: &str, to: &str) -> (ObjectType, ObjectType) {
    (
        ObjectType::parse(from).expect("an object type"),
        ObjectType::parse(to).expect("an object type"),
    )
}

fn optional_type(text: Option<&str>) -> Option<ObjectType> {
    text.map(|t| ObjectType::parse(t).expect("an object type"))
}

/// A stream of one record's associations, named by text.
pub fn list(
    portal: i64,
    from: &str,
    from_id: i64,
    to: Option<&str>,
    cursor: Option<&str>,
) -> ListRequest {
    ListRequest {
        portal,
        from: ObjectType::parse(from).expect("an object type"),
        from_id,
        to: optional_type(to),
        cursor: cursor.map(str::to_string),
    }
}

/// A stream of several records' associations, named by text.
pub fn batch_list(
    portal: i64,
    from: &str,
    from_ids: &[i64],
    to: Option<&str>,
    cursor: Option<&str>,
) -> BatchListRequest {
    BatchListRequest {
        portal,
        from: ObjectType::parse(from).expect("an object type"),
        from_ids: from_ids.to_vec(),
        to: optional_type(to),
        cursor: cursor.map(str::to_string),
    }
}

/// An export stream, named by text.
pub fn export(
    portal: i64,
    from: Option<&str>,
    to: Option<&str>,
    cursor: Option<&str>,
) -> ExportRequest {
    ExportRequest {
        portal,
        from: optional_type(from),
        to: optional_type(to),
        cursor: cursor.map(str::to_string),
    }
}

// ------------------------------------------------------------ server binary

/// The server binary as a child process, started on ports it picked (read
/// from its ready line), with its log lines kept.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub grpc: String,
    pub rest: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `association-service serve` on `store_url` with `env` set
    /// (`ASSOC__…` names), and waits for its ready line.
    pub async fn start(store_url: &str, env: &[(&str, &str)]) -> ServerProcess {
        Self::start_binary(
            Path::new(env!("CARGO_BIN_EXE_association-service")),
            store_url,
            env,
        )
        .await
    }

    /// Starts `binary serve` (an installed copy, say) like `start`.
    pub async fn start_binary(
        binary: &Path,
        store_url: &str,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(binary)
            .arg("serve")
            .env("ASSOC__STORE__URL", store_url)
            .env("ASSOC__SERVER__GRPC_ADDR", "127.0.0.1:0")
            .env("ASSOC__GATEWAY__HTTP_ADDR", "127.0.0.1:0")
            .env("ASSOC__LOG__FILTER", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the server binary");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let ready = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await.expect("the server's log") {
                log.lock().unwrap().push(line.clone());
                if let Some(rest) = line.split("association-service ready: ").nth(1) {
                    return rest.to_string();
                }
            }
            panic!(
                "the server exited before it was ready: {:?}",
                log.lock().unwrap()
            );
        })
        .await
        .expect("the server got ready");
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in the ready line {ready}"))
                .to_string()
        };
        let (grpc, rest) = (format!("http://{}", field("grpc=")), field("rest="));
        let kept = std::sync::Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        ServerProcess {
            child,
            grpc,
            rest,
            log,
        }
    }

    /// A connected gRPC channel to the process.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.grpc.clone())
            .expect("a valid endpoint")
            .connect()
            .await
            .expect("the server accepts connections")
    }

    /// The process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The process's peak resident memory since it started or since
    /// `reset_peak_rss`, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Starts the peak (`peak_rss_kib`) over from the memory resident now.
    pub fn reset_peak_rss(&self) {
        let pid = self.child.id().expect("the server runs");
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS mark");
    }

    fn status_kib(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("the server runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in the server's /proc status"))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the server runs");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "SIGTERM sent");
    }
}

/// Runs the store checker (`association-service verify`'s checks) and fails
/// with every violation it reports.
pub async fn assert_verified(store: &dyn Store, context: &str) {
    assert_sound(
        &store.verify().await.expect("the store checker runs"),
        context,
    );
}

/// Fails with every violation the store checker's reports hold.
pub fn assert_sound(reports: &[association_service::domain::verify::CheckReport], context: &str) {
    let failures: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .flat_map(|r| r.lines())
        .collect();
    assert!(
        failures.is_empty(),
        "{context}: the store checker found violations:\n{}",
        failures.join("\n")
    );
}

/// A HubSpot-defined type.
pub fn hs(type_id: i32) -> association_service::domain::TypeKey {
    association_service::domain::TypeKey {
        category: association_service::domain::Category::HubspotDefined,
        type_id,
    }
}

/// One association to create: `from_id` to `to_id` with `types`.
pub fn input(
    from_id: i64,
    to_id: i64,
    types: &[association_service::domain::TypeKey],
) -> association_service::service::AssociationInput {
    association_service::service::AssociationInput {
        from_id,
        to_id,
        types: types.to_vec(),
    }
}

/// A PostgreSQL cluster of the test's own, which it may stop and start
/// again (`pg_ctl`), on a port of its own. Stopped when dropped.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Creates the cluster and starts it.
    pub fn start() -> PrivatePostgres {
        let bin = postgres_bin_dir().unwrap_or_else(|why| {
            panic!("this test needs PostgreSQL's server binaries (Debian: apt-get install postgresql): {why}")
        });
        let dir = tempfile::Builder::new()
            .prefix("assoc-pg-own")
            .tempdir()
            .expect("temp dir");
        if is_root() {
            let handed = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(handed.success(), "hand the data directory to postgres");
        }
        let data = dir.path().join("data").display().to_string();
        let out = pg_command(
            &bin.join("initdb"),
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        )
        .output()
        .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cluster = PrivatePostgres {
            bin,
            data,
            port: 0,
            dir,
        };
        // A free port is only free until someone takes it: if the server
        // cannot bind it, it does not start, and another is tried.
        for _ in 0..5 {
            cluster.port = free_port().expect("a free port");
            if cluster.try_start().is_ok() {
                return cluster;
            }
        }
        cluster.start_again();
        cluster
    }

    fn ctl(&self, args: &[&str]) {
        if let Err(why) = self.try_ctl(args) {
            panic!("pg_ctl {args:?}: {why}");
        }
    }

    fn try_ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-D", self.data.as_str(), "-w", "-t", "60"];
        all.extend_from_slice(args);
        let out = pg_command(&self.bin.join("pg_ctl"), &all)
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl");
        match out.status.success() {
            true => Ok(()),
            false => Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }

    /// Starts the stopped cluster and waits until it accepts connections.
    pub fn start_again(&self) {
        if let Err(why) = self.try_start() {
            panic!("pg_ctl start: {why}");
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            // Commits reach the kernel before they are acknowledged
            // (synchronous_commit on), so a crash of PostgreSQL's processes
            // loses none; fsync is off: the machine does not crash here.
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c synchronous_commit=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.try_ctl(&["-l", &log, "-o", &options, "start"])
    }

    /// Stops the cluster (`mode`: `fast` ends sessions and shuts down
    /// cleanly; `immediate` is a crash) and waits until it is down.
    pub fn stop(&self, mode: &str) {
        self.ctl(&["-m", mode, "stop"]);
    }

    /// The port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new empty database on the cluster, by URL.
    pub async fn fresh_database(&self) -> String {
        fresh_database_on(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.port
        ))
        .await
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = pg_command(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data, "-m", "immediate", "stop"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

/// How many records each from-record of portal 1 is associated with, by
/// (object type id, record id), read from the tables behind the service.
pub async fn associated_records(url: &str) -> std::collections::HashMap<(String, i64), i64> {
    const COUNTS: &str =
        "SELECT from_object_type, from_object_id, CAST(count(DISTINCT to_object_id) AS BIGINT)
        FROM associations WHERE portal_id = 1 GROUP BY from_object_type, from_object_id";
    let rows: Vec<(String, i64, i64)> = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::query_as(COUNTS)
            .fetch_all(&mut conn)
            .await
            .expect("counts")
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
        sqlx::query_as(COUNTS)
            .fetch_all(&mut conn)
            .await
            .expect("counts")
    };
    rows.into_iter().map(|(t, id, n)| ((t, id), n)).collect()
}

/// A create of `portal`'s deal `deal` with each of `contacts` (unlabeled).
pub fn deal_with_contacts(
    portal: i64,
    deal: i64,
    contacts: impl Iterator<Item = i64>,
) -> association_service::proto::CreateAssociationsRequest {
    association_service::proto::CreateAssociationsRequest {
        portal_id: portal,
        from_object_type: "deals".into(),
        to_object_type: "contacts".into(),
        inputs: contacts
            .map(|to_id| association_service::proto::AssociationInput {
                from_id: deal,
                to_id,
                types: vec![],
            })
            .collect(),
    }
}

/// A `WatchChanges` of `portal` from its oldest retained change, not ending.
pub fn watch_from_beginning(portal: i64) -> association_service::proto::WatchChangesRequest {
    association_service::proto::WatchChangesRequest {
        portal_id: portal,
        cursor: String::new(),
        start: association_service::proto::FeedStartPoint::Beginning as i32,
        stop_at_head: false,
    }
}

/// Creating and updating `portal`'s admin limit of deal -> contact
/// (unlabeled, 3) at `max`.
pub fn deal_contact_limits(
    portal: i64,
    max: i32,
) -> (
    association_service::proto::CreateLimitsRequest,
    association_service::proto::UpdateLimitsRequest,
) {
    use association_service::proto::{AssociationCategory, LimitInput};
    let input = LimitInput {
        category: AssociationCategory::HubspotDefined as i32,
        type_id: 3,
        max_to_object_ids: max,
    };
    (
        association_service::proto::CreateLimitsRequest {
            portal_id: portal,
            from_object_type: "deals".into(),
            to_object_type: "contacts".into(),
            inputs: vec![input],
        },
        association_service::proto::UpdateLimitsRequest {
            portal_id: portal,
            from_object_type: "deals".into(),
            to_object_type: "contacts".into(),
            inputs: vec![input],
        },
    )
}

/// Reads `stream` until it ends, at most `most`: the status it ended with
/// (none when it ended cleanly). Fails when it is still open after `most`.
pub async fn stream_end<T>(
    mut stream: tonic::Streaming<T>,
    most: Duration,
) -> Option<tonic::Status> {
    tokio::time::timeout(most, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream was still open after {most:?}"))
}

/// A portal's feed as read, (seq, kind, row) each: asserts it holds every
/// change from 1 to `head` exactly once, in order, and that replaying it
/// is valid (no row created twice or archived absent); the rows it leaves.
pub fn replay_feed(
    seen: &[(
        i64,
        association_service::domain::feed::ChangeKind,
        association_service::domain::plan::DirectedRow,
    )],
    head: i64,
) -> std::collections::BTreeSet<association_service::domain::plan::DirectedRow> {
    use association_service::domain::feed::ChangeKind;
    let seqs: Vec<i64> = seen.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "every change exactly once, gap-free and in order"
    );
    let mut replayed = std::collections::BTreeSet::new();
    for (seq, kind, row) in seen {
        match kind {
            ChangeKind::Created => assert!(
                replayed.insert(*row),
                "change {seq} creates a row that exists"
            ),
            ChangeKind::Archived => assert!(
                replayed.remove(row),
                "change {seq} archives a row that does not exist"
            ),
            // A merge marker changes no row; the rows it moved follow it.
            ChangeKind::Merged => {}
        }
    }
    replayed
}

/// Streams one record's associations to `to` through the service: (to-id,
/// type ids) per associated record.
pub async fn read_types(
    svc: &Arc<AssociationService>,
    portal: i64,
    from: &str,
    from_id: i64,
    to: &str,
) -> Vec<(i64, Vec<i32>)> {
    let mut receiver = svc
        .stream_associations(list(portal, from, from_id, Some(to), None))
        .await
        .expect("stream");
    let mut records = Vec::new();
    while let Some(chunk) = receiver.recv().await {
        for record in chunk.expect("chunk").records {
            records.push((
                record.to_id,
                record.types.iter().map(|d| d.key.type_id).collect(),
            ));
        }
    }
    records
}

// ------------------------------------------------------------- client stubs

/// Runs `scripts/generate-clients <lang>` once per test process (the stubs
/// of proto/ in examples/<lang>/gen), failing with what to install.
pub fn generated_clients(lang: &'static str) {
    static DONE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if done.contains(&lang) {
        return;
    }
    let repository = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(format!("{repository}/scripts/generate-clients"))
        .arg(lang)
        .output()
        .expect("run scripts/generate-clients");
    assert!(
        output.status.success(),
        "scripts/generate-clients {lang} failed (./scripts/test installs grpcio-tools into .venv and npm packages into examples/typescript/node_modules): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    done.push(lang);
}

/// Python 3 (`PYTHON`, or `python3` from the PATH, which `./scripts/test`
/// starts with `.venv/bin`).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Waits (yielding, never sleeping a fixed time) until `ready` holds;
/// fails after 20 s.
pub async fn until(what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// Instantiates each `suite::<test>(fixture(<backend>).await)` of the
/// calling test file once per backend (a module per backend: `sqlite`,
/// `postgres`, `citus`), so a suite is written once and run on every store,
/// as quickwit's `metastore_test_suite!` does.
#[macro_export]
macro_rules! suite_on_every_backend {
    ($($test:ident),* $(,)?) => {
        $crate::suite_on_backend!(sqlite: $($test),*);
        $crate::suite_on_backend!(postgres: $($test),*);
        $crate::suite_on_backend!(citus: $($test),*);
    };
}

/// One backend's module of `suite_on_every_backend!`.
#[macro_export]
macro_rules! suite_on_backend {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::suite::$test(super::fixture(stringify!($backend)).await).await;
                }
            )*
        }
    };
}

/// The middle value (the upper one of an even count), for the benchmarks'
/// rounds.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A whole number from the environment variable `name`, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
