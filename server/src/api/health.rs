//! grpc.health.v1, as etcd registers it: the server as a whole (service "") is SERVING while it
//! runs (etcd does not tie it to leadership; /health and /readyz do that), NOT_SERVING while it
//! defragments with --experimental-stop-grpc-service-on-defrag; any other service name is
//! NotFound.
#![forbid(unsafe_code)]

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::ctx::Ctx;
use rusted_proto::health::health_check_response::ServingStatus;
use rusted_proto::health::health_server::Health;
use rusted_proto::health::{HealthCheckRequest, HealthCheckResponse};

/// Services this server answers for.
pub const SERVICES: &[&str] = &[""];

/// The health service.
#[derive(Debug, Clone)]
pub struct HealthService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

impl HealthService {
    fn status(&self) -> ServingStatus {
        let defrag = self.ctx.limits.stop_grpc_service_on_defrag
            && self.ctx.defragmenting.load(std::sync::atomic::Ordering::SeqCst) > 0;
        if self.ctx.replica.is_stopped() || defrag {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        }
    }
}

type HealthStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if !SERVICES.contains(&req.get_ref().service.as_str()) {
            return Err(crate::api::errors::ApiError::UnknownService.into());
        }
        Ok(Response::new(HealthCheckResponse { status: self.status() as i32 }))
    }

    type WatchStream = HealthStream;

    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let known = SERVICES.contains(&req.get_ref().service.as_str());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let me = self.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let s = if known { me.status() } else { ServingStatus::ServiceUnknown };
                if last != Some(s) {
                    last = Some(s);
                    if tx.send(Ok(HealthCheckResponse { status: s as i32 })).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
