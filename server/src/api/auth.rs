//! The Auth service: users, roles, permissions, enabling auth, and Authenticate — as etcd 3.5
//! answers them. Changes go through raft (with passwords hashed here first); reads (UserGet,
//! UserList, RoleGet, RoleList, AuthStatus) are answered here after a linearizable read, which
//! gives what etcd's proposal of them gives.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::authorize;
use crate::api::ctx::{Ctx, Who};
use crate::api::errors::{internal, unexpected, ApiError, ApiResult};
use crate::apply::machine::ApplyOut;
use crate::auth::{self, AuthError, AuthOut};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::auth_server::Auth;
use rusted_proto::rustedpb::proposal::Request as P;

/// How many times Authenticate retries when the auth store changed while it checked the
/// password (etcd retries until it did not).
const AUTHENTICATE_TRIES: usize = 8;

/// The Auth service.
#[derive(Debug, Clone)]
pub struct AuthService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

impl AuthService {
    /// An admin-only change: checked here, proposed for the caller, answered with a header.
    async fn change(&self, who: &Who, req: P) -> ApiResult<()> {
        authorize::admin(&self.ctx, who)?;
        self.propose(who, req).await
    }

    async fn propose(&self, who: &Who, req: P) -> ApiResult<()> {
        match self.ctx.propose_for(who, req).await? {
            ApplyOut::Auth(AuthOut::Done) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Runs bcrypt off the async runtime.
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce(&auth::Auth) -> Result<T, AuthError> + Send + 'static,
    ) -> ApiResult<T> {
        let machine = self.ctx.machine.clone();
        Ok(tokio::task::spawn_blocking(move || f(&machine.auth)).await.map_err(internal)??)
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        self.ctx.header_now()
    }

    async fn authenticate_inner(&self, r: pb::AuthenticateRequest) -> ApiResult<String> {
        self.ctx.linearize().await?;
        if !self.ctx.auth().enabled() {
            return Err(AuthError::AuthNotEnabled.into());
        }
        for _ in 0..AUTHENTICATE_TRIES {
            let (name, password) = (r.name.clone(), r.password.clone());
            let rev = self.hashing(move |a| a.check_password(&name, &password)).await?;
            let simple_token =
                if self.ctx.auth().is_jwt() { String::new() } else { auth::token::new_prefix() };
            let req = rusted_proto::rustedpb::Authenticate { name: r.name.clone(), simple_token };
            let token = match self.ctx.propose(P::Authenticate(req)).await? {
                ApplyOut::Auth(AuthOut::Token(t)) => t,
                other => return Err(unexpected(other)),
            };
            // The password was checked against the store of `rev`: if it changed meanwhile,
            // check again.
            if self.ctx.auth().revision() == rev {
                return Ok(token);
            }
        }
        Err(AuthError::AuthFailed.into())
    }
}

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, req: Request<pb::AuthEnableRequest>) -> R<pb::AuthEnableResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        self.change(&who, P::AuthEnable(r)).await?;
        Ok(Response::new(pb::AuthEnableResponse { header: self.header() }))
    }

    async fn auth_disable(
        &self,
        req: Request<pb::AuthDisableRequest>,
    ) -> R<pb::AuthDisableResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        self.change(&who, P::AuthDisable(r)).await?;
        Ok(Response::new(pb::AuthDisableResponse { header: self.header() }))
    }

    async fn auth_status(&self, req: Request<pb::AuthStatusRequest>) -> R<pb::AuthStatusResponse> {
        self.ctx.linearize().await?;
        let who = self.ctx.who_of(&req).await?;
        authorize::admin(&self.ctx, &who)?;
        let st = self.ctx.auth().state();
        Ok(Response::new(pb::AuthStatusResponse {
            header: self.header(),
            enabled: st.enabled,
            auth_revision: st.revision,
        }))
    }

    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> R<pb::AuthenticateResponse> {
        let token = self.authenticate_inner(req.into_inner()).await?;
        Ok(Response::new(pb::AuthenticateResponse { header: self.header(), token }))
    }

    async fn user_add(&self, req: Request<pb::AuthUserAddRequest>) -> R<pb::AuthUserAddResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        authorize::admin(&self.ctx, &who)?;
        let r = self.hashing(move |a| auth::hashed_user_add(a, r)).await?;
        self.propose(&who, P::UserAdd(r)).await?;
        Ok(Response::new(pb::AuthUserAddResponse { header: self.header() }))
    }

    async fn user_get(&self, req: Request<pb::AuthUserGetRequest>) -> R<pb::AuthUserGetResponse> {
        self.ctx.linearize().await?;
        let who = self.ctx.who_of(&req).await?;
        let roles =
            self.ctx.auth().user_get(who.as_ref(), &req.get_ref().name).map_err(ApiError::from)?;
        Ok(Response::new(pb::AuthUserGetResponse { header: self.header(), roles }))
    }

    async fn user_list(
        &self,
        req: Request<pb::AuthUserListRequest>,
    ) -> R<pb::AuthUserListResponse> {
        self.ctx.linearize().await?;
        let who = self.ctx.who_of(&req).await?;
        authorize::admin(&self.ctx, &who)?;
        let users = self.ctx.auth().state().users.into_keys().collect();
        Ok(Response::new(pb::AuthUserListResponse { header: self.header(), users }))
    }

    async fn user_delete(
        &self,
        req: Request<pb::AuthUserDeleteRequest>,
    ) -> R<pb::AuthUserDeleteResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        self.change(&who, P::UserDelete(r)).await?;
        Ok(Response::new(pb::AuthUserDeleteResponse { header: self.header() }))
    }

    async fn user_change_password(
        &self,
        req: Request<pb::AuthUserChangePasswordRequest>,
    ) -> R<pb::AuthUserChangePasswordResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        authorize::admin(&self.ctx, &who)?;
        let r = self.hashing(move |a| auth::hashed_change_password(a, r)).await?;
        self.propose(&who, P::UserChangePassword(r)).await?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse { header: self.header() }))
    }

    async fn user_grant_role(
        &self,
        req: Request<pb::AuthUserGrantRoleRequest>,
    ) -> R<pb::AuthUserGrantRoleResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        self.change(&who, P::UserGrantRole(r)).await?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse { header: self.header() }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> R<pb::AuthUserRevokeRoleResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        self.change(&who, P::UserRevokeRole(r)).await?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse { header: self.header() }))
    }

    async fn role_add(&self, req: Request<pb::AuthRoleAddRequest>) -> R<pb::AuthRoleAddResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        self.change(&who, P::RoleAdd(r)).await?;
        Ok(Response::new(pb::AuthRoleAddResponse { header: self.header() }))
    }

    async fn role_get(&self, req: Request<pb::AuthRoleGetRequest>) -> R<pb::AuthRoleGetResponse> {
        self.ctx.linearize().await?;
        let who = self.ctx.who_of(&req).await?;
        let perm =
            self.ctx.auth().role_get(who.as_ref(), &req.get_ref().role).map_err(ApiError::from)?;
        Ok(Response::new(pb::AuthRoleGetResponse { header: self.header(), perm }))
    }

    async fn role_list(
        &self,
        req: Request<pb::AuthRoleListRequest>,
    ) -> R<pb::AuthRoleListResponse> {
        self.ctx.linearize().await?;
        let who = self.ctx.who_of(&req).await?;
        authorize::admin(&self.ctx, &who)?;
        let roles = self.ctx.auth().state().roles.into_keys().collect();
        Ok(Response::new(pb::AuthRoleListResponse { header: self.header(), roles }))
    }

    async fn role_delete(
        &self,
        req: Request<pb::AuthRoleDeleteRequest>,
    ) -> R<pb::AuthRoleDeleteResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        self.change(&who, P::RoleDelete(r)).await?;
        Ok(Response::new(pb::AuthRoleDeleteResponse { header: self.header() }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> R<pb::AuthRoleGrantPermissionResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        self.change(&who, P::RoleGrantPermission(r)).await?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse { header: self.header() }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> R<pb::AuthRoleRevokePermissionResponse> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        self.change(&who, P::RoleRevokePermission(r)).await?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse { header: self.header() }))
    }
}
