//! The Cluster service: membership through the replication layer.
#![forbid(unsafe_code)]

use std::sync::Arc;

use rusted_replication::{Member, ReplicationError};
use tonic::{Request, Response, Status};

use crate::api::authorize;
use crate::api::ctx::Ctx;
use crate::api::errors::ApiError;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::cluster_server::Cluster;

/// The Cluster service.
#[derive(Debug, Clone)]
pub struct ClusterService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

/// A member on the wire.
pub fn member_out(m: &Member) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

fn members_out(ms: &[Member]) -> Vec<pb::Member> {
    ms.iter().map(member_out).collect()
}

impl ClusterService {
    /// etcd's Cluster headers carry no revision.
    fn header(&self) -> Option<pb::ResponseHeader> {
        self.ctx.header(0)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        authorize::admin(&self.ctx, &who)?;
        let r = req.into_inner();
        let (m, list) = self
            .ctx
            .replica
            .member_add(r.peer_ur_ls, r.is_learner)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::MemberAddResponse {
            header: self.header(),
            member: Some(member_out(&m)),
            members: members_out(&list),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        authorize::admin(&self.ctx, &who)?;
        let list =
            self.ctx.replica.member_remove(req.into_inner().id).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.header(),
            members: members_out(&list),
        }))
    }

    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        authorize::admin(&self.ctx, &who)?;
        let r = req.into_inner();
        let list =
            self.ctx.replica.member_update(r.id, r.peer_ur_ls).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: self.header(),
            members: members_out(&list),
        }))
    }

    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        authorize::identity(&self.ctx, &who)?;
        if req.into_inner().linearizable {
            self.ctx.linearize().await?;
        }
        let list = self.ctx.replica.members();
        Ok(Response::new(pb::MemberListResponse {
            header: self.header(),
            members: members_out(&list),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        authorize::admin(&self.ctx, &who)?;
        let r = req.into_inner();
        if !self.ctx.replica.is_leader() {
            // Only the leader knows the learner's progress: forward, as etcd does.
            let mut c = self.ctx.leader_client()?;
            let t = self.ctx.request_timeout();
            let mut resp = match tokio::time::timeout(t, c.member_promote(r)).await {
                Ok(resp) => resp?.into_inner(),
                Err(_) => return Err(ApiError::Replication(ReplicationError::Timeout).into()),
            };
            resp.header = self.header();
            return Ok(Response::new(resp));
        }
        let list = self.ctx.replica.member_promote(r.id).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: self.header(),
            members: members_out(&list),
        }))
    }
}
