//! `user ...`, `role ...` and `auth enable|disable|status`, with etcdctl's arguments, prompts,
//! messages and exit codes.
#![forbid(unsafe_code)]

use std::io::{BufRead, Write};

use clap::{Args, Subcommand};

use super::print::{self, Format};
use super::{Ctl, CtlError, CtlResult};
use rusted_proto::authpb::permission::Type;
use rusted_proto::authpb::{Permission, UserAddOptions};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::auth_client::AuthClient;

/// `user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Adds a new user
    Add(UserAddArgs),
    /// Deletes a user
    Delete {
        /// The user name.
        args: Vec<String>,
    },
    /// Gets detailed information of a user
    Get {
        /// The user name.
        args: Vec<String>,
        /// Show permissions of roles granted to the user
        #[arg(long)]
        detail: bool,
    },
    /// Lists all users
    List {
        /// (none)
        args: Vec<String>,
    },
    /// Changes password of user
    Passwd {
        /// The user name.
        args: Vec<String>,
        /// Read password from stdin instead of interactive terminal
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        interactive: bool,
    },
    /// Grants a role to a user
    GrantRole {
        /// The user and role names.
        args: Vec<String>,
    },
    /// Revokes a role from a user
    RevokeRole {
        /// The user and role names.
        args: Vec<String>,
    },
}

/// `user add`.
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// `<user name or user:password>`.
    pub args: Vec<String>,
    /// Read password from stdin instead of interactive terminal
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub interactive: bool,
    /// Supply password from the command line flag
    #[arg(long = "new-user-password")]
    pub new_user_password: Option<String>,
    /// Create a user without password (CN based auth only)
    #[arg(long = "no-password")]
    pub no_password: bool,
}

/// `role ...`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Adds a new role
    Add {
        /// The role name.
        args: Vec<String>,
    },
    /// Deletes a role
    Delete {
        /// The role name.
        args: Vec<String>,
    },
    /// Gets detailed information of a role
    Get {
        /// The role name.
        args: Vec<String>,
    },
    /// Lists all roles
    List {
        /// (none)
        args: Vec<String>,
    },
    /// Grants a key to a role
    GrantPermission(PermArgs),
    /// Revokes a key from a role
    RevokePermission(PermArgs),
}

/// `role grant-permission` / `revoke-permission`.
#[derive(Debug, Args)]
pub struct PermArgs {
    /// `<role name> [<permission type>] <key> [endkey]`.
    pub args: Vec<String>,
    /// Grant a prefix permission
    #[arg(long)]
    pub prefix: bool,
    /// Grant a permission of keys that are greater than or equal to the given key using byte
    /// compare
    #[arg(long = "from-key")]
    pub from_key: bool,
}

/// `auth ...`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Enables authentication
    Enable {
        /// (none)
        args: Vec<String>,
    },
    /// Disables authentication
    Disable {
        /// (none)
        args: Vec<String>,
    },
    /// Returns authentication status
    Status {
        /// (none)
        args: Vec<String>,
    },
}

/// Reads a password after printing `what`: from the terminal with echo off, as etcdctl, or a
/// line of stdin when stdin is not a terminal.
pub fn prompt(what: &str) -> std::io::Result<String> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return rpassword::prompt_password(what);
    }
    eprint!("{what}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// etcdctl's non-interactive password: the first whitespace-separated word of stdin.
fn stdin_word() -> CtlResult<String> {
    let mut all = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut all)
        .map_err(|e| CtlError::failed(e.to_string()))?;
    Ok(all.split_whitespace().next().unwrap_or_default().to_string())
}

/// A new password: prompted twice (interactive) or read from stdin.
fn new_password(name: &str, interactive: bool) -> CtlResult<String> {
    if !interactive {
        return stdin_word();
    }
    let fail = |e: std::io::Error| CtlError::args(format!("failed to ask password: {e}"));
    let p1 = prompt(&format!("Password of {name}: ")).map_err(fail)?;
    if p1.is_empty() {
        return Err(CtlError::args("empty password"));
    }
    let p2 = prompt(&format!("Type password of {name} again for confirmation: ")).map_err(fail)?;
    if p1 != p2 {
        return Err(CtlError::args("given passwords are different"));
    }
    Ok(p1)
}

/// Prints a response: `simple` as `line` says, JSON and protobuf as etcdctl does.
fn show<M>(ctl: &Ctl, r: &M, simple: impl FnOnce()) -> CtlResult
where
    M: serde::Serialize + prost::Message,
{
    match ctl.write_out {
        Format::Json => println!("{}", print::json(r)),
        Format::Protobuf => print::protobuf(r),
        Format::Simple => simple(),
        other => return Err(super::unsupported(other)),
    }
    Ok(())
}

fn one_arg(args: &[String], msg: &str) -> CtlResult<String> {
    match args {
        [a] => Ok(a.clone()),
        _ => Err(CtlError::args(msg)),
    }
}

fn no_args(args: &[String], msg: &str) -> CtlResult {
    if args.is_empty() {
        Ok(())
    } else {
        Err(CtlError::args(msg))
    }
}

/// Runs a `user` command.
pub async fn user(ctl: &Ctl, cmd: &UserCommand) -> CtlResult {
    match cmd {
        UserCommand::Add(a) => user_add(ctl, a).await,
        UserCommand::Delete { args } => {
            let name = one_arg(args, "user delete command requires user name as its argument")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let req = pb::AuthUserDeleteRequest { name: name.clone() };
            let r = ctl.timed(c.user_delete(req)).await?.into_inner();
            show(ctl, &r, || println!("User {name} deleted"))
        }
        UserCommand::Get { args, detail } => {
            let name = one_arg(args, "user get command requires user name as its argument")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let req = pb::AuthUserGetRequest { name: name.clone() };
            let r = ctl.timed(c.user_get(req)).await?.into_inner();
            if !detail {
                return show(ctl, &r, || {
                    let roles: String = r.roles.iter().map(|x| format!(" {x}")).collect();
                    println!("User: {name}\nRoles:{roles}");
                });
            }
            // etcdctl's --detail: a header line, then each role as `role get` prints it, in
            // any output format.
            println!("User: {name}");
            for role in &r.roles {
                println!();
                let req = pb::AuthRoleGetRequest { role: role.clone() };
                let rr = ctl.timed(c.role_get(req)).await?.into_inner();
                show(ctl, &rr, || print_role(role, &rr.perm))?;
            }
            Ok(())
        }
        UserCommand::List { args } => {
            no_args(args, "user list command requires no arguments")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let r = ctl.timed(c.user_list(pb::AuthUserListRequest {})).await?.into_inner();
            show(ctl, &r, || r.users.iter().for_each(|u| println!("{u}")))
        }
        UserCommand::Passwd { args, interactive } => {
            let name = one_arg(args, "user passwd command requires user name as its argument")?;
            let password = new_password(&name, *interactive)?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let req = pb::AuthUserChangePasswordRequest { name, password, ..Default::default() };
            let r = ctl.timed(c.user_change_password(req)).await?.into_inner();
            show(ctl, &r, || println!("Password updated"))
        }
        UserCommand::GrantRole { args } => {
            let [user, role] = args.as_slice() else {
                return Err(CtlError::args(
                    "user grant command requires user name and role name as its argument",
                ));
            };
            let mut c = AuthClient::new(ctl.dial().await?);
            let req = pb::AuthUserGrantRoleRequest { user: user.clone(), role: role.clone() };
            let r = ctl.timed(c.user_grant_role(req)).await?.into_inner();
            show(ctl, &r, || println!("Role {role} is granted to user {user}"))
        }
        UserCommand::RevokeRole { args } => {
            let [name, role] = args.as_slice() else {
                return Err(CtlError::args(
                    "user revoke-role requires user name and role name as its argument",
                ));
            };
            let mut c = AuthClient::new(ctl.dial().await?);
            let req = pb::AuthUserRevokeRoleRequest { name: name.clone(), role: role.clone() };
            let r = ctl.timed(c.user_revoke_role(req)).await?.into_inner();
            show(ctl, &r, || println!("Role {role} is revoked from user {name}"))
        }
    }
}

async fn user_add(ctl: &Ctl, a: &UserAddArgs) -> CtlResult {
    let arg = one_arg(&a.args, "user add command requires user name as its argument")?;
    let (name, password) = match (a.no_password, arg.split_once(':')) {
        (false, Some((n, p))) => {
            if n.is_empty() {
                return Err(CtlError::args("empty user name is not allowed"));
            }
            (n.to_string(), p.to_string())
        }
        (true, _) => (arg.clone(), String::new()),
        (false, None) => match &a.new_user_password {
            Some(p) => (arg.clone(), p.clone()),
            None => (arg.clone(), new_password(&arg, a.interactive)?),
        },
    };
    let mut c = AuthClient::new(ctl.dial().await?);
    let req = pb::AuthUserAddRequest {
        name: name.clone(),
        password,
        options: Some(UserAddOptions { no_password: a.no_password }),
        ..Default::default()
    };
    let r = ctl.timed(c.user_add(req)).await?.into_inner();
    show(ctl, &r, || println!("User {name} created"))
}

/// etcd's prefix end: the key with its last byte below 0xff incremented, the rest dropped;
/// `"\0"` when every byte is 0xff.
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One permission line of `role get`.
fn perm_line(p: &Permission) -> String {
    let key = String::from_utf8_lossy(&p.key);
    let end = String::from_utf8_lossy(&p.range_end);
    let mut line = if p.range_end.is_empty() {
        format!("\t{key}")
    } else if p.range_end == [0] {
        format!("\t[{key}, <open ended>")
    } else {
        format!("\t[{key}, {end})")
    };
    if !p.range_end.is_empty() && prefix_end(&p.key) == p.range_end {
        line.push_str(&format!(" (prefix {key})"));
    }
    line
}

fn print_role(name: &str, perms: &[Permission]) {
    println!("Role {name}");
    println!("KV Read:");
    for p in perms.iter().filter(|p| p.perm_type != Type::Write as i32) {
        println!("{}", perm_line(p));
    }
    println!("KV Write:");
    for p in perms.iter().filter(|p| p.perm_type != Type::Read as i32) {
        println!("{}", perm_line(p));
    }
}

/// etcdctl's permRange: the key and end the flags and arguments name.
fn perm_range(key: &str, end: Option<&String>, a: &PermArgs) -> CtlResult<(Vec<u8>, Vec<u8>)> {
    if a.prefix && a.from_key {
        return Err(CtlError::args("--from-key and --prefix flags are mutually exclusive"));
    }
    if key.is_empty() {
        // The whole key space.
        let end = if a.prefix || a.from_key { vec![0] } else { Vec::new() };
        return Ok((vec![0], end));
    }
    let k = key.as_bytes().to_vec();
    match (end, a.prefix, a.from_key) {
        (Some(_), true, _) => Err(CtlError::args("unexpected endkey argument with --prefix flag")),
        (Some(_), _, true) => {
            Err(CtlError::args("unexpected endkey argument with --from-key flag"))
        }
        (Some(e), false, false) => Ok((k, e.as_bytes().to_vec())),
        (None, true, _) => {
            let e = prefix_end(&k);
            Ok((k, e))
        }
        (None, _, true) => Ok((k, vec![0])),
        (None, false, false) => Ok((k, Vec::new())),
    }
}

/// Runs a `role` command.
pub async fn role(ctl: &Ctl, cmd: &RoleCommand) -> CtlResult {
    match cmd {
        RoleCommand::Add { args } => {
            let name = one_arg(args, "role add command requires role name as its argument")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let r = ctl.timed(c.role_add(pb::AuthRoleAddRequest { name: name.clone() })).await?;
            show(ctl, r.get_ref(), || println!("Role {name} created"))
        }
        RoleCommand::Delete { args } => {
            let role = one_arg(args, "role delete command requires role name as its argument")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let r =
                ctl.timed(c.role_delete(pb::AuthRoleDeleteRequest { role: role.clone() })).await?;
            show(ctl, r.get_ref(), || println!("Role {role} deleted"))
        }
        RoleCommand::Get { args } => {
            let role = one_arg(args, "role get command requires role name as its argument")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let r = ctl.timed(c.role_get(pb::AuthRoleGetRequest { role: role.clone() })).await?;
            show(ctl, r.get_ref(), || print_role(&role, &r.get_ref().perm))
        }
        RoleCommand::List { args } => {
            no_args(args, "role list command requires no arguments")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let r = ctl.timed(c.role_list(pb::AuthRoleListRequest {})).await?.into_inner();
            show(ctl, &r, || r.roles.iter().for_each(|x| println!("{x}")))
        }
        RoleCommand::GrantPermission(a) => {
            let (name, ty, key, end) = match a.args.as_slice() {
                [n, t, k] => (n, t, k, None),
                [n, t, k, e] => (n, t, k, Some(e)),
                _ => {
                    return Err(CtlError::args(
                        "role grant command requires role name, permission type, and key [endkey] as its argument",
                    ))
                }
            };
            let perm_type = match ty.to_uppercase().as_str() {
                "READ" => Type::Read,
                "WRITE" => Type::Write,
                "READWRITE" => Type::Readwrite,
                _ => return Err(CtlError::args(format!("invalid permission type: {ty}"))),
            };
            let (key, range_end) = perm_range(key, end, a)?;
            let perm = Permission { perm_type: perm_type as i32, key, range_end };
            let mut c = AuthClient::new(ctl.dial().await?);
            let req = pb::AuthRoleGrantPermissionRequest { name: name.clone(), perm: Some(perm) };
            let r = ctl.timed(c.role_grant_permission(req)).await?.into_inner();
            show(ctl, &r, || println!("Role {name} updated"))
        }
        RoleCommand::RevokePermission(a) => {
            let (role, key, end) = match a.args.as_slice() {
                [n, k] => (n, k, None),
                [n, k, e] => (n, k, Some(e)),
                _ => {
                    return Err(CtlError::args(
                        "role revoke-permission command requires role name and key [endkey] as its argument",
                    ))
                }
            };
            let (k, range_end) = perm_range(key, end, a)?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let req = pb::AuthRoleRevokePermissionRequest {
                role: role.clone(),
                key: k,
                range_end: range_end.clone(),
            };
            let r = ctl.timed(c.role_revoke_permission(req)).await?.into_inner();
            show(ctl, &r, || {
                let end = String::from_utf8_lossy(&range_end);
                if range_end.is_empty() {
                    println!("Permission of key {key} is revoked from role {role}");
                } else if range_end == [0] {
                    println!(
                        "Permission of range [{key}, <open ended> is revoked from role {role}"
                    );
                } else {
                    println!("Permission of range [{key}, {end}) is revoked from role {role}");
                }
            })
        }
    }
}

/// Runs an `auth` command.
pub async fn auth(ctl: &Ctl, cmd: &AuthCommand) -> CtlResult {
    match cmd {
        AuthCommand::Enable { args } => {
            no_args(args, "auth enable command does not accept any arguments")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            // As etcdctl: a missing root role is created and granted to root, then again.
            loop {
                match ctl.timed(c.auth_enable(pb::AuthEnableRequest {})).await {
                    // etcdctl prints this line whatever the output format.
                    Ok(_) => {
                        println!("Authentication Enabled");
                        return Ok(());
                    }
                    Err(e) if e.message == "etcdserver: root user does not have root role" => {
                        let add = pb::AuthRoleAddRequest { name: "root".into() };
                        if let Err(e) = ctl.timed(c.role_add(add)).await {
                            if e.message != "etcdserver: role name already exists" {
                                return Err(e);
                            }
                        }
                        let grant = pb::AuthUserGrantRoleRequest {
                            user: "root".into(),
                            role: "root".into(),
                        };
                        ctl.timed(c.user_grant_role(grant)).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        AuthCommand::Disable { args } => {
            no_args(args, "auth disable command does not accept any arguments")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            ctl.timed(c.auth_disable(pb::AuthDisableRequest {})).await?;
            println!("Authentication Disabled");
            Ok(())
        }
        AuthCommand::Status { args } => {
            no_args(args, "auth status command does not accept any arguments")?;
            let mut c = AuthClient::new(ctl.dial().await?);
            let r = ctl.timed(c.auth_status(pb::AuthStatusRequest {})).await?.into_inner();
            show(ctl, &r, || {
                println!("Authentication Status: {}", r.enabled);
                println!("AuthRevision: {}", r.auth_revision);
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_and_permission_lines() {
        assert_eq!(prefix_end(b"foo"), b"fop".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        let p = |k: &[u8], e: &[u8]| Permission {
            perm_type: 0,
            key: k.to_vec(),
            range_end: e.to_vec(),
        };
        assert_eq!(perm_line(&p(b"foo", b"fop")), "\t[foo, fop) (prefix foo)");
        assert_eq!(perm_line(&p(b"k", b"")), "\tk");
        assert_eq!(perm_line(&p(b"z", b"\0")), "\t[z, <open ended>");
        assert_eq!(perm_line(&p(b"a", b"c")), "\t[a, c)");
    }
}
