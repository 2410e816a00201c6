//! The Auth service, before authentication exists in rusted. Auth is disabled, and the answers
//! say so truthfully: AuthStatus reports it disabled, AuthDisable succeeds (it already is),
//! Authenticate fails as etcd's does with auth disabled. Everything that would create or
//! change users and roles is refused with Unimplemented and a message saying it is not
//! supported yet, rather than pretending to store them.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tonic::{Code, Request, Response, Status};

use crate::api::ctx::Ctx;
use crate::api::errors::ApiError;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::auth_server::Auth;

/// What a user/role RPC answers.
pub const NOT_SUPPORTED: &str =
    "rusted: authentication (users, roles, permissions) is not supported yet";

/// The Auth service.
#[derive(Debug, Clone)]
pub struct AuthService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

fn unsupported<T>() -> Result<Response<T>, Status> {
    Err(Status::new(Code::Unimplemented, NOT_SUPPORTED))
}

/// The impl: the methods given in full, plus one refusing method per listed RPC. (The whole
/// impl is generated so that `async_trait` sees the expanded methods.)
macro_rules! auth_impl {
    ({ $($given:tt)* } $($name:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl Auth for AuthService {
            $($given)*
            $(
                async fn $name(
                    &self,
                    _r: Request<pb::$req>,
                ) -> Result<Response<pb::$resp>, Status> {
                    unsupported()
                }
            )*
        }
    };
}

auth_impl! {{
    async fn auth_status(
        &self,
        _r: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        Ok(Response::new(pb::AuthStatusResponse {
            header: self.ctx.header_now(),
            enabled: false,
            auth_revision: 0,
        }))
    }

    async fn auth_disable(
        &self,
        _r: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        Ok(Response::new(pb::AuthDisableResponse { header: self.ctx.header_now() }))
    }

    async fn authenticate(
        &self,
        _r: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        Err(ApiError::AuthNotEnabled.into())
    }
}
        auth_enable(AuthEnableRequest) -> AuthEnableResponse;
        user_add(AuthUserAddRequest) -> AuthUserAddResponse;
        user_get(AuthUserGetRequest) -> AuthUserGetResponse;
        user_list(AuthUserListRequest) -> AuthUserListResponse;
        user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
        user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
        user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
        user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
        role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
        role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
        role_list(AuthRoleListRequest) -> AuthRoleListResponse;
        role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
        role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse;
        role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;
}
