//! The config file (`--config bale.toml`) and `bale config check`.
//!
//! The file is TOML; its top-level keys are the long flag names of `bale serve`, written with
//! `_` (`cache_mb = 512`; the `-` spelling `cache-mb` is accepted too). Nothing here lists the
//! flags: the file is applied generically over clap's definition of [`ServeArgs`], so a flag
//! added later is a config key at once. A setting given on the command line or through its
//! environment variable wins over the file (`MINIO_ROOT_USER`/`MINIO_ROOT_PASSWORD` count as
//! the environment variables of `access_key`/`secret_key`). How: the command line is parsed
//! once; for every file key whose flag did not come from the command line or the environment,
//! `--flag=value` is appended to the arguments, and they are parsed again.
//!
//! The one key that is not a flag is `keys`: an array of `[[keys]]` tables, the same entries
//! a `--keys-file` holds (see `crate::keys`).
//!
//! Errors (unreadable file, TOML syntax, unknown key, a value of the wrong type or out of
//! range) come back as one line naming the file and the key.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::config::{Cli, ServeArgs};

/// Largest config file read, bytes (a config file is a few hundred bytes; 1 MiB is a typo or
/// the wrong file).
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// The arg id of `--config` (the file cannot name itself).
const CONFIG_ID: &str = "config";
/// The one top-level key of a config file that is not a flag.
pub const KEYS_SECTION: &str = "keys";

/// Settings whose environment variable is read by bale itself (not by clap): the file must
/// not override them either.
const EXTRA_ENV: &[(&str, &str)] = &[
    ("access_key", "MINIO_ROOT_USER"),
    ("secret_key", "MINIO_ROOT_PASSWORD"),
];

/// The command line after the config file was applied.
pub struct Parsed {
    pub cli: Cli,
    /// The final matches (for `bale config check`: every value and where it came from).
    pub matches: clap::ArgMatches,
    /// Arg ids whose value came from the config file.
    pub from_file: BTreeSet<String>,
}

/// Why the command line could not be parsed.
pub enum ParseError {
    /// clap's own error (usage, `--help`, `--version`): print it as clap does.
    Clap(clap::Error),
    /// A config file problem: one line.
    File(String),
}

/// Parses `argv` (program name first) and applies `--config`, if given.
pub fn parse(argv: Vec<OsString>) -> Result<Parsed, ParseError> {
    let cmd = Cli::command();
    let matches = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(ParseError::Clap)?;
    let (leaf_cmd, leaf) = leaf(&cmd, &matches);
    let mut from_file = BTreeSet::new();
    let mut argv = argv;
    if let Some(path) = leaf.get_one::<std::path::PathBuf>(CONFIG_ID) {
        let table = read_table(path).map_err(ParseError::File)?;
        let extra =
            file_args(path, &table, leaf_cmd, leaf, &mut from_file).map_err(ParseError::File)?;
        argv.extend(extra);
    }
    let config_path = (!from_file.is_empty())
        .then(|| leaf.get_one::<std::path::PathBuf>(CONFIG_ID).cloned())
        .flatten();
    let matches = cmd.try_get_matches_from(&argv).map_err(|e| {
        // A rule between flags (`--tls-cert` requires `--tls-key`) broken by the file's values:
        // still one line, naming the file.
        match &config_path {
            Some(path) => ParseError::File(format!("{}: {}", path.display(), one_line(&e))),
            None => ParseError::Clap(e),
        }
    })?;
    let cli = Cli::from_arg_matches(&matches).map_err(ParseError::Clap)?;
    Ok(Parsed {
        cli,
        matches,
        from_file,
    })
}

/// The innermost subcommand and its matches (where `ServeArgs` lives).
fn leaf<'a>(
    cmd: &'a clap::Command,
    m: &'a clap::ArgMatches,
) -> (&'a clap::Command, &'a clap::ArgMatches) {
    let (mut c, mut m) = (cmd, m);
    while let Some((name, sub)) = m.subcommand() {
        match c.find_subcommand(name) {
            Some(sc) => (c, m) = (sc, sub),
            None => break,
        }
    }
    (c, m)
}

/// Reads and parses a TOML file, bounded; errors are one line.
pub fn read_table(path: &Path) -> Result<toml::Table, String> {
    let shown = path.display();
    let f = std::fs::File::open(path).map_err(|e| format!("{shown}: cannot open: {e}"))?;
    let mut buf = Vec::new();
    f.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if buf.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(format!(
            "{shown}: larger than {MAX_CONFIG_FILE_BYTES} bytes; not a config file"
        ));
    }
    parse_toml(&buf).map_err(|e| format!("{shown}: {e}"))
}

/// Parses TOML bytes into a table; the error is one line with the line number.
pub fn parse_toml(bytes: &[u8]) -> Result<toml::Table, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        format!("line {line}: not UTF-8")
    })?;
    text.parse::<toml::Table>().map_err(|e| {
        let line = e.span().map_or(0, |s| {
            1 + text[..s.start.min(text.len())].matches('\n').count()
        });
        let msg = e.message().trim().replace('\n', " ");
        format!("line {line}: invalid TOML: {msg}")
    })
}

/// The `--flag=value` arguments the file contributes (flags and environment win).
fn file_args(
    path: &Path,
    table: &toml::Table,
    cmd: &clap::Command,
    m: &clap::ArgMatches,
    from_file: &mut BTreeSet<String>,
) -> Result<Vec<OsString>, String> {
    let shown = path.display();
    let mut out = Vec::new();
    for (key, value) in table {
        if key == KEYS_SECTION {
            continue; // access keys: read by crate::keys
        }
        // Matched by the long flag name (an argument's id may differ from it).
        let long_name = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long_name.as_str()))
            .filter(|a| a.get_id().as_str() != CONFIG_ID)
            .ok_or_else(|| {
                format!(
                    "{shown}: unknown key `{}` (keys are `bale serve` flag names, e.g. cache_mb)",
                    key.escape_debug()
                )
            })?;
        let id = arg.get_id().as_str().to_string();
        if !from_file.insert(id.clone()) {
            return Err(format!("{shown}: `{key}` is given twice (as `-` and `_`)"));
        }
        let overridden = matches!(
            m.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) || EXTRA_ENV
            .iter()
            .any(|(i, env)| *i == id && std::env::var_os(env).is_some());
        if overridden {
            from_file.remove(&id);
            continue;
        }
        let long = arg.get_long().unwrap_or_default();
        let args = flag_args(arg, long, value).map_err(|e| format!("{shown}: {key}: {e}"))?;
        check_values(arg, &args).map_err(|e| {
            let value = value.to_string().escape_debug().to_string();
            format!("{shown}: {key} = {value}: {e}")
        })?;
        out.extend(args);
    }
    Ok(out)
}

/// One TOML value as command-line arguments for `--long`.
fn flag_args(arg: &clap::Arg, long: &str, value: &toml::Value) -> Result<Vec<OsString>, String> {
    use toml::Value as V;
    let is_switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
    if is_switch {
        return match value {
            V::Boolean(true) => Ok(vec![format!("--{long}").into()]),
            V::Boolean(false) => Ok(Vec::new()),
            _ => Err("expects true or false".into()),
        };
    }
    let scalar = |v: &V| -> Result<String, String> {
        match v {
            V::String(s) => Ok(s.clone()),
            V::Integer(i) => Ok(i.to_string()),
            V::Float(f) => Ok(f.to_string()),
            V::Boolean(b) => Ok(b.to_string()),
            _ => Err(format!("expects a {}, not a {}", "value", v.type_str())),
        }
    };
    match value {
        V::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items
            .iter()
            .map(|v| scalar(v).map(|s| format!("--{long}={s}").into()))
            .collect(),
        V::Array(_) => Err("takes one value, not an array".into()),
        v => Ok(vec![format!("--{long}={}", scalar(v)?).into()]),
    }
}

/// clap's message without its usage block, on one line.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ").trim_start_matches("error: ").to_string()
}

/// Parses the arguments with that one flag alone, so a bad value is reported against its
/// config key, in one line.
fn check_values(arg: &clap::Arg, args: &[OsString]) -> Result<(), String> {
    let probe = clap::Command::new("bale")
        .no_binary_name(true)
        .arg(arg.clone().required(false));
    probe.try_get_matches_from(args).map(|_| ()).map_err(|e| {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("invalid value");
        first.trim_start_matches("error: ").to_string()
    })
}

// ---- bale config check ----------------------------------------------------------------------

/// Whether a setting's value is a secret (masked in `bale config check`).
pub fn is_secret(id: &str) -> bool {
    ["secret", "password", "token"]
        .iter()
        .any(|w| id.contains(w))
}

/// A secret as `bale config check` shows it: its first four characters, then `****` (all
/// masked when it is shorter than 12 characters).
pub fn mask(secret: &str) -> String {
    if secret.chars().count() < 12 {
        return "****".into();
    }
    let head: String = secret.chars().take(4).collect();
    format!("{head}****")
}

/// One value as TOML: numbers and booleans bare, everything else a quoted string.
fn toml_value(raw: &str) -> String {
    let bare = raw.parse::<i64>().is_ok()
        || (raw.parse::<f64>().is_ok() && raw.contains('.') && !raw.starts_with('.'))
        || raw == "true"
        || raw == "false";
    if bare {
        raw.to_string()
    } else {
        toml::Value::String(raw.to_string()).to_string()
    }
}

/// The effective settings of `bale serve` as TOML lines (`key = value  # source`), every
/// flag, secrets masked; a setting with no value is a comment.
pub fn effective_settings(matches: &clap::ArgMatches, from_file: &BTreeSet<String>) -> Vec<String> {
    let cmd = Cli::command();
    let (leaf_cmd, m) = leaf(&cmd, matches);
    let mut lines = Vec::new();
    for arg in leaf_cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if matches!(id, "help" | "version") {
            continue;
        }
        let name = long.replace('-', "_"); // the config key
        let source = if from_file.contains(id) {
            "config file"
        } else {
            match m.value_source(id) {
                Some(ValueSource::CommandLine) => "command line",
                Some(ValueSource::EnvVariable) => "environment",
                Some(ValueSource::DefaultValue) => "default",
                _ => "not set",
            }
        };
        let values: Vec<String> = m
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let shown: Vec<String> = values
            .iter()
            .map(|v| toml_value(&if is_secret(&name) { mask(v) } else { v.clone() }))
            .collect();
        let line = match (shown.len(), arg.get_action()) {
            (0, _) => format!("# {name} =   (not set)"),
            (_, ArgAction::Append) => format!("{name} = [{}]  # {source}", shown.join(", ")),
            _ => format!("{name} = {}  # {source}", shown.join(", ")),
        };
        lines.push(line);
    }
    lines
}

/// `bale config check`: validate like `bale serve` would and print the effective settings.
pub fn check(args: &ServeArgs, parsed: &Parsed) -> Result<(), String> {
    use crate::keys::{self, Access};
    // Everything is checked before anything is printed: an error is the only output.
    args.validate()?;
    let (access, secret, defaulted) = args.credentials();
    let source = keys::source_of(args)?;
    let table = keys::build(&keys::Key::root(&access, &secret), source.as_ref())?;
    println!(
        "# bale {} effective configuration",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(c) = &args.config {
        println!("# config file: {}", c.display());
    }
    for l in effective_settings(&parsed.matches, &parsed.from_file) {
        println!("{l}");
    }
    let note = if defaulted {
        " - the built-in default"
    } else {
        ""
    };
    println!("# root key: {access} (secret {}){note}", mask(&secret));
    if let Some(s) = &source {
        println!("# keys from {}:", s.path().display());
    }
    for k in table.keys().iter().skip(1) {
        let rw = match k.access {
            Access::ReadWrite => "read-write",
            Access::ReadOnly => "read-only",
        };
        let buckets = match &k.buckets {
            None => "every bucket".to_string(),
            Some(ps) => ps
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        let (ak, sk) = (&k.access_key, mask(&k.secret_key));
        println!("#   {ak}: {rw}, {buckets} (secret {sk})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_are_one_line_with_the_line_number() {
        let e = parse_toml(b"a = 1\nb = = 2\n").unwrap_err();
        assert!(e.starts_with("line 2: invalid TOML"), "{e}");
        assert!(!e.contains('\n'));
        let e = parse_toml(b"a = 1\n\xff\n").unwrap_err();
        assert_eq!(e, "line 2: not UTF-8");
        assert!(parse_toml(b"").unwrap().is_empty());
    }

    #[test]
    fn hostile_toml_does_not_panic() {
        let inputs: [&[u8]; 8] = [
            b"[[[[",
            b"a = \"\\u{110000}\"",
            b"a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            b"a = 1e99999",
            b"\x00\x00",
            b"a.b.c.d.e.f = 1",
            b"a = 99999999999999999999999",
            b"'''",
        ];
        for i in inputs {
            let _ = parse_toml(i);
        }
    }

    #[test]
    fn masking() {
        assert_eq!(mask("baleadmin-secret"), "bale****");
        assert_eq!(mask("short"), "****");
        assert_eq!(mask("ééééééééééééé"), "éééé****");
        assert!(is_secret("secret_key") && is_secret("metrics_token"));
        assert!(!is_secret("access_key"));
    }

    #[test]
    fn values_as_toml() {
        assert_eq!(toml_value("256"), "256");
        assert_eq!(toml_value("0.5"), "0.5");
        assert_eq!(toml_value("true"), "true");
        assert_eq!(toml_value("127.0.0.1:9000"), "\"127.0.0.1:9000\"");
        assert_eq!(toml_value("a\"b"), "'a\"b'");
    }
}
