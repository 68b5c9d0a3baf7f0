//! A sample admin plugin: serves `associations.v1.AdminHookService`
//! (proto/associations/v1/hooks.proto), refuses any association limit above
//! `--max-limit`, and prints each committed admin change it is told of (one
//! line each, de-duplicated on the idempotency key, as plugins should).
//!
//! ```sh
//! cargo run --example limit_policy -- --addr 127.0.0.1:9000 --max-limit 100
//! ```
//!
//! then register it in the service's config file:
//!
//! ```toml
//! [[hooks.plugins]]
//! name = "limit-policy"
//! endpoint = "http://127.0.0.1:9000"
//! events = ["LIMITS_CREATED", "LIMITS_UPDATED"]
//! failure_policy = "closed"
//! ```
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use association_service::proto::admin_hook_service_server::{
    AdminHookService, AdminHookServiceServer,
};
use association_service::proto::{
    AdminEvent, ChangeCommittedRequest, ChangeCommittedResponse, ValidateChangeRequest,
    ValidateChangeResponse,
};
use clap::Parser;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Refuses association limits above a maximum; prints committed admin changes.
#[derive(Parser)]
struct Options {
    /// Where to serve the plugin (port 0 picks a free one; the line
    /// `limit-policy listening on ADDR` says which).
    #[arg(long, default_value = "127.0.0.1:9000")]
    addr: SocketAddr,
    /// The highest limit an admin may set.
    #[arg(long, default_value_t = 100)]
    max_limit: i32,
}

struct LimitPolicy {
    max_limit: i32,
    /// Idempotency keys of the changes already printed.
    seen: Mutex<HashSet<String>>,
}

#[tonic::async_trait]
impl AdminHookService for LimitPolicy {
    async fn validate_change(
        &self,
        request: Request<ValidateChangeRequest>,
    ) -> Result<Response<ValidateChangeResponse>, Status> {
        let change = request.into_inner().change.unwrap_or_default();
        let limits = change.after.map(|state| state.limits).unwrap_or_default();
        let too_high = limits.iter().find(|l| l.max_to_object_ids > self.max_limit);
        let verdict = match too_high {
            Some(limit) => ValidateChangeResponse {
                allow: false,
                message: format!(
                    "{} exceeds this portal's maximum of {} (type {})",
                    limit.max_to_object_ids, self.max_limit, limit.type_id
                ),
            },
            None => ValidateChangeResponse {
                allow: true,
                message: String::new(),
            },
        };
        Ok(Response::new(verdict))
    }

    async fn change_committed(
        &self,
        request: Request<ChangeCommittedRequest>,
    ) -> Result<Response<ChangeCommittedResponse>, Status> {
        let request = request.into_inner();
        let first_time = self
            .seen
            .lock()
            .expect("not poisoned")
            .insert(request.idempotency_key.clone());
        if first_time {
            let change = request.change.unwrap_or_default();
            let event = AdminEvent::try_from(change.event)
                .map(|e| e.as_str_name())
                .unwrap_or("unknown event");
            println!(
                "committed {} {event} by {} on {} -> {}",
                request.idempotency_key,
                change.actor,
                change.from_object_type_id,
                change.to_object_type_id
            );
        }
        Ok(Response::new(ChangeCommittedResponse {}))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    println!("limit-policy listening on {}", listener.local_addr()?);
    let plugin = LimitPolicy {
        max_limit: options.max_limit,
        seen: Mutex::new(HashSet::new()),
    };
    tonic::transport::Server::builder()
        .add_service(AdminHookServiceServer::new(plugin))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
