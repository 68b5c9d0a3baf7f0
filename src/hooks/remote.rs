//! Remote plugins: the `AdminPlugin` trait over a gRPC client of the
//! plugin's `associations.v1.AdminHookService` service.
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_http::HeaderInjector;
use tonic::transport::{Channel, Endpoint};

use super::{AdminPlugin, HookError, Verdict};
use crate::domain::admin::AdminChange;
use crate::proto::admin_hook_service_client::AdminHookServiceClient;
use crate::proto::convert::admin_change_to_proto;
use crate::proto::{ChangeCommittedRequest, ValidateChangeRequest};

pub struct RemotePlugin {
    client: AdminHookServiceClient<Channel>,
    timeout: Duration,
}

impl RemotePlugin {
    /// A client of the plugin at `endpoint` (`http://host:port`); it
    /// connects on first use and reconnects after failures.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<RemotePlugin, String> {
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| format!("invalid plugin endpoint {endpoint}: {e}"))?
            .connect_timeout(timeout)
            .connect_lazy();
        Ok(RemotePlugin {
            client: AdminHookServiceClient::new(channel),
            timeout,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        // The plugin's spans join the trace of the call that asks it.
        let mut headers = std::mem::take(request.metadata_mut()).into_headers();
        crate::telemetry::inject_current(&mut HeaderInjector(&mut headers));
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        request
    }
}

fn failed(status: tonic::Status) -> HookError {
    HookError::Failed(format!("{:?}: {}", status.code(), status.message()))
}

#[async_trait]
impl AdminPlugin for RemotePlugin {
    async fn validate_change(&self, change: &AdminChange) -> Result<Verdict, HookError> {
        let request = self.request(ValidateChangeRequest {
            change: Some(admin_change_to_proto(change)),
        });
        let answer = self
            .client
            .clone()
            .validate_change(request)
            .await
            .map_err(failed)?
            .into_inner();
        Ok(if answer.allow {
            Verdict::Allow
        } else if answer.message.trim().is_empty() {
            Verdict::Deny("The change was refused by an admin plugin".into())
        } else {
            Verdict::Deny(answer.message)
        })
    }

    async fn change_committed(
        &self,
        key: &str,
        seq: i64,
        change: &AdminChange,
    ) -> Result<(), HookError> {
        let request = self.request(ChangeCommittedRequest {
            idempotency_key: key.to_string(),
            sequence: seq,
            change: Some(admin_change_to_proto(change)),
        });
        self.client
            .clone()
            .change_committed(request)
            .await
            .map_err(failed)?;
        Ok(())
    }
}
