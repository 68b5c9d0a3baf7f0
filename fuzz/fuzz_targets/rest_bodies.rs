//! REST bodies come from anyone: any bytes sent as the body of any REST
//! endpoint that takes one (the real router, on an embedded store) are
//! answered below 500, and every refusal is HubSpot's error body: JSON with
//! `status` "error", a message, a category and a correlation id.
#![no_main]
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use association_service::admission::{Admission, CallPlaces, DailyLedger};
use association_service::auth::Authenticator;
use association_service::config::Settings;
use association_service::gateway::{router, Access, Guards, REST_ROUTES};
use association_service::service::AssociationService;
use association_service::store;
use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::ServiceExt;

/// No daily quota is set (every rate is 0: unlimited); the ledger is never drawn.
struct Unmetered;

#[async_trait::async_trait]
impl DailyLedger for Unmetered {
    async fn draw(&self, _: i64, _: u64, want: u32, _: u32) -> Result<(u32, u32), String> {
        Ok((want, 0))
    }
}

struct Gateway {
    runtime: tokio::runtime::Runtime,
    router: Router,
    /// (method, path) of every endpoint that reads a body, its parameters
    /// filled in with types and ids that exist in every portal.
    routes: Vec<(&'static str, String)>,
}

fn fill(pattern: &str) -> String {
    let mut path = String::new();
    let mut types = ["contacts", "companies"].into_iter().cycle();
    for segment in pattern.split('/').skip(1) {
        path.push('/');
        if !segment.starts_with('{') {
            path.push_str(segment);
        } else if segment.to_ascii_lowercase().contains("id") {
            path.push('1');
        } else {
            path.push_str(types.next().unwrap());
        }
    }
    path
}

fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = std::env::temp_dir().join(format!("rest-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let url = format!("sqlite://{}", dir.join("fuzz.db").display());
        let router = runtime.block_on(async {
            let store = store::connect(&url, 4).await.expect("the embedded store");
            store.migrate().await.expect("migrations");
            let settings = Settings::load(None).expect("the default settings");
            let service = Arc::new(AssociationService::new(store, settings.service()));
            router(
                service,
                Access {
                    default_portal: 7,
                    authenticator: Arc::new(Authenticator::from_config(&[]).unwrap()),
                    public_url: None,
                },
                Guards {
                    admission: Arc::new(Admission::new(0, 0, 0, Arc::new(Unmetered))),
                    calls: Arc::new(CallPlaces::new(16, 16, 16)),
                    request_timeout: Duration::from_secs(30),
                    body_read_timeout: Duration::from_secs(30),
                    body_timeout: Duration::from_secs(30),
                },
            )
        });
        let routes = REST_ROUTES
            .iter()
            .filter(|(method, _, _)| matches!(*method, "POST" | "PUT"))
            .map(|(method, pattern, _)| (*method, fill(pattern)))
            .collect();
        Gateway {
            runtime,
            router,
            routes,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let gateway = gateway();
    let (method, path) = &gateway.routes[pick as usize % gateway.routes.len()];
    let request = http::Request::builder()
        .method(*method)
        .uri(path.as_str())
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let (status, answer) = gateway.runtime.block_on(async {
        let response = gateway.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, bytes)
    });
    let shown = String::from_utf8_lossy(&answer);
    assert!(
        status.as_u16() < 500,
        "{method} {path} answered {status}: {shown}"
    );
    if status.as_u16() >= 400 {
        let error: Value = serde_json::from_slice(&answer)
            .unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e}): {shown}"));
        assert_eq!(error["status"], "error", "{method} {path}: {shown}");
        for field in ["message", "category", "correlationId"] {
            assert!(
                error[field].is_string(),
                "{method} {path} lacks {field}: {shown}"
            );
        }
    }
});
