//! The command line as etcd's (Go's `flag` package) reads it, turned into what clap reads:
//! `-name x` is `--name x`; the legacy flags etcd still accepts and ignores are dropped; an
//! ETCD_* variable that a command-line flag shadows is refused, as etcd refuses it, and one no
//! flag reads is reported.
#![forbid(unsafe_code)]

use std::collections::HashSet;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use crate::config::flags::ServerConfig;

/// A configuration read from the command line (or the file it names).
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub cfg: ServerConfig,
    /// Warnings to log once logging is set up (ignored flags, unknown variables or keys).
    pub warnings: Vec<String>,
}

/// Why no configuration could be read.
#[derive(Debug)]
pub enum LoadError {
    /// clap's own answer (usage errors, `--help`, `--version`): print it and exit as clap says.
    Usage(clap::Error),
    /// A refusal, for one line on stderr and exit code 1.
    Invalid(String),
}

/// etcd's reading of its configuration: the command line (Go style, see [`normalize`]; a flag
/// given twice keeps its last value), then ETCD_* variables for the flags not given (empty
/// ones skipped, as etcd skips them), or — when `--config-file` / ETCD_CONFIG_FILE names one —
/// only that file. `env` is the whole environment; clap reads none itself. Values are checked
/// by [`ServerConfig::check`] at start, not here.
/// This process's arguments; bytes that are not UTF-8 are replaced (U+FFFD), as Go's strings
/// would carry them through, instead of failing the start (`std::env::args` panics on them).
pub fn process_args() -> Vec<String> {
    std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect()
}

/// This process's environment, as [`process_args`]: a variable whose name is not UTF-8 is
/// left out (no flag reads it); a value that is not UTF-8 is kept, with replacements.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .collect()
}

pub fn load(
    argv: impl IntoIterator<Item = String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, LoadError> {
    let n = normalize(argv);
    let env: Vec<(String, String)> = env.into_iter().collect();
    let mut warnings: Vec<String> =
        n.ignored.iter().map(|f| format!("flag --{f} is ignored (as by etcd)")).collect();
    let args = drop_empty_optionals(n.args.clone());
    let cmd = || ServerConfig::command().mut_args(|a| a.env(None));
    let m = cmd().try_get_matches_from(&args).map_err(positional)?;
    let cfg = ServerConfig::from_arg_matches(&m).map_err(LoadError::Usage)?;
    let file = cfg.config_file.clone().or_else(|| {
        env.iter()
            .find(|(k, v)| k == "ETCD_CONFIG_FILE" && !v.is_empty())
            .map(|(_, v)| std::path::PathBuf::from(v))
    });
    if let Some(path) = file {
        let (mut file_cfg, skipped) = crate::config::file::load(&path)
            .map_err(|e| LoadError::Invalid(format!("--config-file: {e}")))?;
        file_cfg.config_file = Some(path);
        let d = &file_cfg.deferred;
        if (!d.discovery.is_empty()
            || !d.discovery_srv.is_empty()
            || !d.discovery_endpoints.is_empty())
            && file_cfg.initial_cluster == "default=http://localhost:2380"
        {
            file_cfg.initial_cluster.clear();
        }
        bootstrap_flags(&file_cfg).map_err(LoadError::Invalid)?;
        warnings.extend(
            skipped
                .into_iter()
                .map(|k| format!("configuration key {k:?} not used by rusted, ignored")),
        );
        return Ok(Loaded { cfg: file_cfg, warnings });
    }
    let (from_env, unrecognized) = env_args(&args, &env).map_err(LoadError::Invalid)?;
    for k in unrecognized {
        warnings.push(format!("unrecognized environment variable {k}"));
    }
    let mut all = args.clone();
    all.extend(from_env);
    let m = cmd().try_get_matches_from(drop_empty_optionals(all)).map_err(positional)?;
    let mut cfg = ServerConfig::from_arg_matches(&m).map_err(LoadError::Usage)?;
    let set = |id: &str| matches!(m.value_source(id), Some(ValueSource::CommandLine));
    let d = &cfg.deferred;
    let discovering =
        !d.discovery.is_empty() || !d.discovery_srv.is_empty() || !d.discovery_endpoints.is_empty();
    if discovering && !set("initial_cluster") {
        // etcd's default --initial-cluster gives way to the discovery methods.
        cfg.initial_cluster.clear();
    }
    bootstrap_flags(&cfg).map_err(LoadError::Invalid)?;
    let may_be_proxy = !cfg.deferred.discovery.is_empty()
        && cfg.deferred.discovery_fallback == "proxy"
        || cfg.deferred.proxy != "off";
    if set("listen_client_urls") && !set("advertise_client_urls") && !may_be_proxy {
        return Err(LoadError::Invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .into(),
        ));
    }
    Ok(Loaded { cfg, warnings })
}

/// etcd's rule: one way to bootstrap at most.
pub fn bootstrap_flags(cfg: &ServerConfig) -> Result<(), String> {
    let ways = [
        !cfg.deferred.discovery.is_empty(),
        !cfg.initial_cluster.is_empty(),
        !cfg.deferred.discovery_srv.is_empty(),
        !cfg.deferred.discovery_endpoints.is_empty(),
    ];
    if ways.iter().filter(|w| **w).count() > 1 {
        // etcd 3.4's words, unless the v3 discovery of etcd 3.6 is among them.
        if ways[3] {
            return Err("multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\", \"discovery-endpoints\" or \"discovery-srv\"".into());
        }
        return Err("multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"".into());
    }
    Ok(())
}

/// Flags of etcd 0.4 and Go's test binaries that etcd 3.5 still accepts and ignores.
const IGNORED: [&str; 15] = [
    "cluster-active-size",
    "cluster-remove-delay",
    "cluster-sync-interval",
    "config",
    "force",
    "max-result-buffer",
    "max-retry-attempts",
    "peer-heartbeat-interval",
    "peer-election-timeout",
    "retry-interval",
    "snapshot",
    "v",
    "vv",
    "test.coverprofile",
    "test.outputdir",
];

/// What the command line asks for once read as etcd reads it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Normalized {
    /// Arguments for clap.
    pub args: Vec<String>,
    /// Legacy flags dropped (etcd ignores them too).
    pub ignored: Vec<String>,
}

/// An argument that is not a flag is etcd's "not a valid flag" (exit code 1), not a usage
/// error.
fn positional(e: clap::Error) -> LoadError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() == ErrorKind::UnknownArgument {
        if let Some(ContextValue::String(a)) = e.get(ContextKind::InvalidArg) {
            if !a.starts_with('-') {
                return LoadError::Invalid(format!("'{a}' is not a valid flag"));
            }
        }
    }
    LoadError::Usage(e)
}

/// Rewrites Go-style arguments for clap.
pub fn normalize(argv: impl IntoIterator<Item = String>) -> Normalized {
    let mut out = Normalized::default();
    let mut it = argv.into_iter();
    if let Some(prog) = it.next() {
        out.args.push(prog);
    }
    let mut rest_positional = false;
    for a in it {
        if rest_positional {
            out.args.push(a);
            continue;
        }
        if a == "--" {
            rest_positional = true;
            out.args.push(a);
            continue;
        }
        // Go accepts one dash as well as two; clap only two for long names.
        let long = match a.strip_prefix("--") {
            Some(l) => l.to_string(),
            None => match a.strip_prefix('-') {
                Some(l)
                    if (l.len() > 1 || IGNORED.contains(&l))
                        && l.starts_with(|c: char| c.is_ascii_alphabetic()) =>
                {
                    l.to_string()
                }
                _ => {
                    out.args.push(a);
                    continue;
                }
            },
        };
        let name = long.split('=').next().unwrap_or_default();
        if IGNORED.contains(&name) {
            out.ignored.push(name.to_string());
            continue;
        }
        out.args.push(format!("--{long}"));
    }
    out
}

/// Drops `--flag=` with an empty value for flags that have no default (paths, mostly): Go
/// reads an empty value as "not set", clap as a missing value.
pub fn drop_empty_optionals(args: Vec<String>) -> Vec<String> {
    let cmd = ServerConfig::command();
    args.into_iter()
        .filter(|a| {
            let Some(name) = a.strip_prefix("--").and_then(|r| r.strip_suffix('=')) else {
                return true;
            };
            !cmd.get_arguments()
                .any(|arg| arg.get_long() == Some(name) && arg.get_default_values().is_empty())
        })
        .collect()
}

/// The ETCD_* variable of each flag.
fn flag_envs() -> Vec<(String, String)> {
    ServerConfig::command()
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            let env = a.get_env()?.to_string_lossy().into_owned();
            Some((long, env))
        })
        .collect()
}

/// etcd's reading of the environment: `--flag=value` for each non-empty ETCD_* variable whose
/// flag the command line does not give; a variable for a flag that it does give is an error
/// (etcd refuses it); variables no flag reads are returned for a warning.
pub fn env_args(
    args: &[String],
    env: &[(String, String)],
) -> Result<(Vec<String>, Vec<String>), String> {
    let given: HashSet<&str> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or_default())
        .collect();
    let envs = flag_envs();
    let mut out = Vec::new();
    let mut unrecognized = Vec::new();
    for (k, v) in env {
        if !k.starts_with("ETCD_") || k == "ETCD_CONFIG_FILE" {
            continue;
        }
        match envs.iter().find(|(_, e)| e == k) {
            Some((flag, _)) if given.contains(flag.as_str()) => {
                return Err(format!(
                    "conflicting environment variable {k:?} is shadowed by corresponding command-line flag --{flag} (either unset environment variable or disable flag)"
                ));
            }
            Some(_) if v.is_empty() => {}
            Some((flag, _)) => out.push(format!("--{flag}={v}")),
            None => unrecognized.push(k.clone()),
        }
    }
    Ok((out, unrecognized))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn single_dashes_become_double_and_legacy_flags_go() {
        let n = normalize(v(&[
            "rusted",
            "-name",
            "infra0",
            "-initial-cluster-state=new",
            "--v",
            "-snapshot=true",
            "-h",
            "-",
            "--",
            "-x",
        ]));
        assert_eq!(
            n.args,
            v(&[
                "rusted",
                "--name",
                "infra0",
                "--initial-cluster-state=new",
                "-h",
                "-",
                "--",
                "-x"
            ])
        );
        assert_eq!(n.ignored, v(&["v", "snapshot"]));
    }

    #[test]
    fn variables_fill_in_flags_not_given() {
        let args = v(&["rusted", "--name=a", "--data-dir", "/x"]);
        let env = |k: &str, val: &str| vec![(k.to_string(), val.to_string())];
        let e = env_args(&args, &env("ETCD_NAME", "b")).unwrap_err();
        assert!(e.contains("\"ETCD_NAME\"") && e.contains("--name"), "{e}");
        assert!(env_args(&args, &env("ETCD_DATA_DIR", "/y")).is_err());
        let none: Vec<String> = Vec::new();
        assert_eq!(
            env_args(&args, &env("ETCD_SNAPSHOT_COUNT", "5")).unwrap(),
            (v(&["--snapshot-count=5"]), none.clone())
        );
        assert_eq!(
            env_args(&args, &env("ETCD_SNAPSHOT_COUNT", "")).unwrap(),
            (none.clone(), none.clone())
        );
        assert_eq!(
            env_args(&args, &env("ETCD_NO_SUCH", "1")).unwrap(),
            (none.clone(), v(&["ETCD_NO_SUCH"]))
        );
        assert_eq!(env_args(&args, &env("HOME", "/root")).unwrap(), (none.clone(), none));
    }
}
