//! The servers `caplab serve` may load, fixed by the operator at start (`--target NAME=URL`,
//! repeatable; a bare URL is named `default`), with the built-in simulator always there as
//! `sim`. An experiment sent over HTTP names one of them: a URL in it is refused, so caplab can
//! never be turned into a forwarder to addresses the operator did not choose.
//!
//! Credentials never reach a view or a file, and need not be on the command line (where `ps`
//! shows them): an API key comes from `CAPLAB_API_KEY_<NAME>` (e.g. `CAPLAB_API_KEY_DEFAULT`)
//! or `--target-key-file NAME=PATH` and is sent as a bearer token; a Basic password comes from
//! `CAPLAB_TARGET_PASSWORD_<NAME>` or `--target-password-file NAME=PATH`, with the user named
//! in the URL (`http://alice@host:8000`). `user:pass@` in a URL still works (taken out of it and
//! sent as Basic auth), with a warning at start.

use caplab_shared::FieldError;
use reqwest::header::HeaderValue;

/// The name of the built-in simulator.
pub const SIM: &str = "sim";

/// One server caplab may load.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    /// Base URL without credentials: safe to show and save.
    pub url: String,
    /// `Authorization` to send with every request to it (never shown or saved).
    pub auth: Option<HeaderValue>,
    /// A simulator inside this caplab: each request to it holds two of caplab's descriptors.
    pub in_process: bool,
}

/// All allowed targets; the first is the default.
#[derive(Clone, Debug)]
pub struct Targets {
    list: Vec<Target>,
}

impl Targets {
    /// From `--target` values (`NAME=URL` or a bare URL) and the simulator's URL. With no
    /// `--target`, the simulator is the default; `env` looks up API keys
    /// (`CAPLAB_API_KEY_<NAME>`) and Basic passwords (`CAPLAB_TARGET_PASSWORD_<NAME>`).
    pub fn new(args: &[String], sim_url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Targets, String> {
        let mut list = Vec::new();
        for arg in args {
            let (name, url) = match arg.split_once('=') {
                Some((name, url)) if !name.contains("://") => (name.trim().to_string(), url.trim()),
                _ => ("default".to_string(), arg.trim()),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
                return Err(format!("--target {arg}: a target's name is letters, digits, '-', '_' and '.' (NAME=URL)"));
            }
            if name == SIM || list.iter().any(|t: &Target| t.name == name) {
                return Err(format!("--target {arg}: the name {name:?} is taken (\"sim\" is the built-in simulator)"));
            }
            let key = env(&key_variable(&name));
            let password = env(&password_variable(&name));
            list.push(Target::from_url(&name, url, key.as_deref(), password.as_deref()).map_err(|e| format!("--target {arg}: {e}"))?);
        }
        list.push(Target { name: SIM.into(), url: sim_url.trim_end_matches('/').to_string(), auth: None, in_process: true });
        Ok(Targets { list })
    }

    pub fn default_target(&self) -> &Target {
        &self.list[0]
    }

    pub fn all(&self) -> &[Target] {
        &self.list
    }

    /// Adds a simulated GPU and model (`--sim-profile`), after the built-in `sim`.
    pub fn add_simulated(&mut self, name: String, url: &str) {
        self.list.push(Target { name, url: url.trim_end_matches('/').to_string(), auth: None, in_process: true });
    }

    /// The target an experiment names (empty: the default), or why it cannot be used.
    pub fn resolve(&self, name: &str) -> Result<&Target, FieldError> {
        let names = || self.list.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
        if name.contains("://") {
            return Err(FieldError::new(
                "target",
                format!("name one of the allowed targets ({}); a URL is not accepted here: the operator chooses the servers with --target NAME=URL", names()),
            ));
        }
        if name.is_empty() {
            return Ok(self.default_target());
        }
        self.list.iter().find(|t| t.name == name).ok_or_else(|| FieldError::new("target", format!("no target named {name:?}; the allowed ones are: {}", names())))
    }
}

/// The variable holding target `name`'s API key: `CAPLAB_API_KEY_<NAME>`.
pub fn key_variable(name: &str) -> String {
    format!("CAPLAB_API_KEY_{}", variable_suffix(name))
}

/// The variable holding target `name`'s Basic password: `CAPLAB_TARGET_PASSWORD_<NAME>`.
pub fn password_variable(name: &str) -> String {
    format!("CAPLAB_TARGET_PASSWORD_{}", variable_suffix(name))
}

fn variable_suffix(name: &str) -> String {
    name.to_ascii_uppercase().replace(['-', '.'], "_")
}

/// A secret read from a file named by `--target-key-file` / `--target-password-file`: its
/// first line, trimmed. Refused when empty; a file others may read is named in `warnings`.
pub fn read_secret_file(path: &std::path::Path, warnings: &mut Vec<String>) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        return Err(format!("{} is empty: its first line is the secret", path.display()));
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            warnings.push(format!("{} may be read by other users (chmod 600 it)", path.display()));
        }
    }
    Ok(secret)
}

impl Target {
    /// A target from a URL (for `caplab run --target URL` too). `api_key`, when given, is sent
    /// as a bearer token; else `password` with the URL's user as Basic auth; else credentials
    /// in the URL itself (moved to the `Authorization` header).
    pub fn from_url(name: &str, url: &str, api_key: Option<&str>, password: Option<&str>) -> Result<Target, String> {
        let mut parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?} must be an http:// or https:// URL"));
        }
        let password = password.filter(|p| !p.is_empty());
        if password.is_some() && parsed.username().is_empty() {
            return Err("a password is given for it but its URL names no user: write it as http://USER@host:port".into());
        }
        let basic = (!parsed.username().is_empty()).then(|| {
            let user = urlencoding_decode(parsed.username());
            let pass = password.map_or_else(|| parsed.password().map(urlencoding_decode).unwrap_or_default(), String::from);
            format!("Basic {}", crate::secrets::base64(&format!("{user}:{pass}")))
        });
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let auth = match (api_key.filter(|k| !k.trim().is_empty()), basic) {
            (Some(key), _) => Some(format!("Bearer {}", key.trim())),
            (None, basic) => basic,
        };
        let auth = auth.map(|a| HeaderValue::from_str(&a).map(|mut v| {
            v.set_sensitive(true);
            v
        }));
        let auth = auth.transpose().map_err(|_| "the credentials hold characters a header cannot carry".to_string())?;
        let clean = parsed.as_str().trim_end_matches('/').trim_end_matches("/v1").to_string();
        Ok(Target { name: name.to_string(), url: clean, auth, in_process: false })
    }
}

fn urlencoding_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn named_and_bare_targets_with_the_simulator_always_there() {
        let t = Targets::new(&["vllm=http://127.0.0.1:8000/v1/".into(), "http://10.0.0.2:8000".into()], "http://127.0.0.1:5555", no_env).unwrap();
        let names: Vec<&str> = t.all().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["vllm", "default", "sim"]);
        assert_eq!(t.default_target().url, "http://127.0.0.1:8000");
        assert_eq!(t.resolve("").unwrap().name, "vllm");
        assert_eq!(t.resolve("sim").unwrap().url, "http://127.0.0.1:5555");
        let e = t.resolve("http://169.254.169.254/latest").unwrap_err();
        assert!(e.message.contains("a URL is not accepted here") && e.message.contains("vllm, default, sim"), "{}", e.message);
        assert!(t.resolve("other").unwrap_err().message.starts_with("no target named \"other\""));
        assert_eq!(Targets::new(&[], "http://127.0.0.1:1", no_env).unwrap().default_target().name, "sim");
        assert!(Targets::new(&["sim=http://x".into()], "http://127.0.0.1:1", no_env).unwrap_err().contains("taken"));
        assert!(Targets::new(&["bad name=http://x".into()], "http://127.0.0.1:1", no_env).is_err());
        assert!(Targets::new(&["x=ftp://h".into()], "http://127.0.0.1:1", no_env).unwrap_err().contains("http://"));
    }

    use crate::secrets::base64;

    #[test]
    fn credentials_leave_the_url_for_a_header() {
        let t = Target::from_url("a", "http://user:p%40ss@10.0.0.2:8000/", None, None).unwrap();
        assert_eq!(t.url, "http://10.0.0.2:8000");
        assert_eq!(t.auth.unwrap().to_str().unwrap(), format!("Basic {}", base64("user:p@ss")));
        // The password from the environment (or a file), the user from the URL: nothing secret in `ps`.
        let t = Targets::new(&["lab.1=http://alice@10.0.0.2:8000".into()], "http://127.0.0.1:1", |k| {
            (k == "CAPLAB_TARGET_PASSWORD_LAB_1").then(|| "s3cret pass".to_string())
        })
        .unwrap();
        assert_eq!(t.default_target().url, "http://10.0.0.2:8000");
        assert_eq!(t.default_target().auth.as_ref().unwrap().to_str().unwrap(), format!("Basic {}", base64("alice:s3cret pass")));
        let e = Target::from_url("b", "http://10.0.0.2:8000", None, Some("pw")).unwrap_err();
        assert!(e.contains("names no user"), "{e}");
        let t = Targets::new(&["open-ai=https://api.openai.com/v1".into()], "http://127.0.0.1:1", |k| {
            (k == "CAPLAB_API_KEY_OPEN_AI").then(|| "sk-test".to_string())
        })
        .unwrap();
        assert_eq!(t.default_target().auth.as_ref().unwrap().to_str().unwrap(), "Bearer sk-test");
        assert!(t.default_target().auth.as_ref().unwrap().is_sensitive());
    }
}
