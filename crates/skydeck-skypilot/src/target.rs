//! Which API server to talk to and with which credential, resolved as SkyPilot's client does.
//!
//! Endpoint: `--endpoint`, then `SKYPILOT_API_SERVER_ENDPOINT`, then `api_server.endpoint` in
//! the SkyPilot config (`$SKYPILOT_GLOBAL_CONFIG` or `~/.sky/config.yaml`, written by
//! `sky api login`), then `http://127.0.0.1:46580`. Basic-auth credentials inside the URL are
//! split off and kept secret. Token: the caller's credential (skydeck reads environment
//! variables, token files and AWS Secrets Manager in one place, `skydeck-secrets`), else
//! `api_server.service_account_token` in the SkyPilot config. Every value remembers its source
//! so errors can name it; no secret is ever part of a `Display` or `Debug` output.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};

/// Environment variable that overrides the endpoint (SkyPilot's own name).
pub const ENV_ENDPOINT: &str = "SKYPILOT_API_SERVER_ENDPOINT";
/// Environment variable holding a service-account token (SkyPilot's own name).
pub const ENV_SA_TOKEN: &str = "SKYPILOT_SERVICE_ACCOUNT_TOKEN";
/// Environment variable holding a service-account token (the seed deployment's name).
pub const ENV_API_KEY: &str = "SKYPILOT_API_KEY";
/// Environment variable that points at the SkyPilot config file.
pub const ENV_CONFIG: &str = "SKYPILOT_GLOBAL_CONFIG";

/// Where the endpoint came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// The `--endpoint` flag or the skydeck config file.
    Flag,
    /// `SKYPILOT_API_SERVER_ENDPOINT`.
    Env,
    /// `api_server.endpoint` in this SkyPilot config file.
    SkyConfig(PathBuf),
    /// Nothing was configured: the local default.
    Default,
    /// The local server used by `--fallback-local`.
    Fallback,
}

impl fmt::Display for EndpointSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointSource::Flag => f.write_str("--endpoint"),
            EndpointSource::Env => f.write_str(ENV_ENDPOINT),
            EndpointSource::SkyConfig(p) => write!(f, "api_server.endpoint in {}", p.display()),
            EndpointSource::Default => f.write_str("the default local endpoint"),
            EndpointSource::Fallback => f.write_str("--fallback-local"),
        }
    }
}

/// Where the credential came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Resolved by the caller; the text names the place (`$SKYPILOT_API_KEY`, `file …`).
    Provided(String),
    /// `api_server.service_account_token` in this SkyPilot config file.
    SkyConfig(PathBuf),
    /// User and password inside the endpoint URL (basic auth).
    UrlUserInfo,
    /// No credential at all.
    None,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Provided(place) => f.write_str(place),
            CredentialSource::SkyConfig(p) => {
                write!(f, "api_server.service_account_token in {}", p.display())
            }
            CredentialSource::UrlUserInfo => f.write_str("basic-auth user in the endpoint URL"),
            CredentialSource::None => f.write_str("no credential"),
        }
    }
}

/// A resolved API-server endpoint. The URL never holds user info; basic-auth credentials found
/// in the configured URL are kept in `basic_auth`.
#[derive(Clone)]
pub struct Endpoint {
    /// Base URL without user info and without a trailing slash.
    pub url: Url,
    /// User and password from the URL, if it had them.
    pub basic_auth: Option<(String, SecretString)>,
    /// Where the endpoint came from.
    pub source: EndpointSource,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url.as_str())
            .field("basic_auth_user", &self.basic_auth.as_ref().map(|(u, _)| u))
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str().trim_end_matches('/'))
    }
}

impl Endpoint {
    /// Parses an endpoint URL, splitting off user info. The error names `what` and says what
    /// was expected, without echoing a password.
    pub fn parse(raw: &str, source: EndpointSource) -> Result<Self> {
        let trimmed = raw.trim().trim_end_matches('/');
        let mut url = Url::parse(trimmed).map_err(|e| Error::Config {
            message: format!(
                "endpoint from {source} is not a valid URL ({e}); expected e.g. \
                 http://127.0.0.1:46580 or https://user:pass@skypilot.example.com"
            ),
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Error::Config {
                message: format!(
                    "endpoint from {source} has scheme `{}`; expected http or https",
                    url.scheme()
                ),
            });
        }
        if url.host().is_none() {
            return Err(Error::Config {
                message: format!("endpoint from {source} has no host"),
            });
        }
        let basic_auth = if !url.username().is_empty() || url.password().is_some() {
            let user = percent_decode(url.username());
            let pass = percent_decode(url.password().unwrap_or(""));
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some((user, SecretString::from(pass)))
        } else {
            None
        };
        Ok(Endpoint {
            url,
            basic_auth,
            source,
        })
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn join(&self, path: &str) -> Url {
        let mut url = self.url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A service-account token and where it came from. `Debug` never shows the token.
#[derive(Clone)]
pub struct Credential {
    /// The token (`sky_…`).
    pub token: SecretString,
    /// Where it came from.
    pub source: CredentialSource,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential(<redacted> from {})", self.source)
    }
}

/// Endpoint plus credential: everything needed to build a [`crate::Client`].
#[derive(Debug, Clone)]
pub struct Target {
    /// Where the server is.
    pub endpoint: Endpoint,
    /// The bearer token, if any.
    pub credential: Option<Credential>,
}

impl Target {
    /// Where the credential that the server will see comes from (for error messages).
    pub fn credential_source(&self) -> CredentialSource {
        match (&self.credential, &self.endpoint.basic_auth) {
            (Some(c), _) => c.source.clone(),
            (None, Some(_)) => CredentialSource::UrlUserInfo,
            (None, None) => CredentialSource::None,
        }
    }
}

/// The inputs of resolution, so tests can resolve without touching the process environment.
pub struct Inputs<'a> {
    /// `--endpoint` (or the skydeck config's endpoint).
    pub endpoint: Option<&'a str>,
    /// The token, when the caller found one (environment, file, secret store).
    pub credential: Option<Credential>,
    /// Reads an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The home directory (for `~/.sky/config.yaml`).
    pub home: Option<PathBuf>,
}

impl<'a> Inputs<'a> {
    /// Inputs from the real process environment.
    pub fn from_process(endpoint: Option<&'a str>, credential: Option<Credential>) -> Self {
        Inputs {
            endpoint,
            credential,
            env: &process_env,
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[derive(Deserialize, Default)]
struct SkyConfig {
    #[serde(default)]
    api_server: Option<ApiServerSection>,
}

#[derive(Deserialize, Default)]
struct ApiServerSection {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    service_account_token: Option<String>,
}

fn sky_config_path(inputs: &Inputs<'_>) -> Option<PathBuf> {
    if let Some(p) = (inputs.env)(ENV_CONFIG).filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(p));
    }
    inputs
        .home
        .as_ref()
        .map(|h| h.join(".sky").join("config.yaml"))
}

fn load_sky_config(path: &Path) -> Result<Option<ApiServerSection>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config {
                message: format!("cannot read SkyPilot config {}: {e}", path.display()),
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let cfg: SkyConfig = serde_saphyr::from_str(&text).map_err(|e| Error::Config {
        // serde-saphyr errors quote positions, not values, but be safe: only the first line.
        message: format!(
            "SkyPilot config {} is not valid YAML with an `api_server` mapping: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or_default()
        ),
    })?;
    Ok(cfg.api_server)
}

/// Resolves endpoint and credential.
pub fn resolve(inputs: &Inputs<'_>) -> Result<Target> {
    let cfg_path = sky_config_path(inputs);
    let mut cfg: Option<Option<ApiServerSection>> = None;
    let mut sky_cfg = |path: &Path| -> Result<Option<ApiServerSection>> {
        if cfg.is_none() {
            cfg = Some(load_sky_config(path)?);
        }
        Ok(cfg.as_ref().unwrap().as_ref().map(|s| ApiServerSection {
            endpoint: s.endpoint.clone(),
            service_account_token: s.service_account_token.clone(),
        }))
    };

    let endpoint = if let Some(e) = inputs.endpoint.filter(|s| !s.trim().is_empty()) {
        Endpoint::parse(e, EndpointSource::Flag)?
    } else if let Some(e) = (inputs.env)(ENV_ENDPOINT).filter(|s| !s.trim().is_empty()) {
        Endpoint::parse(&e, EndpointSource::Env)?
    } else if let Some((path, e)) = cfg_path
        .as_deref()
        .map(|p| sky_cfg(p).map(|s| (p.to_path_buf(), s.and_then(|s| s.endpoint))))
        .transpose()?
        .and_then(|(p, e)| e.map(|e| (p, e)))
    {
        Endpoint::parse(&e, EndpointSource::SkyConfig(path))?
    } else {
        Endpoint::parse(crate::DEFAULT_ENDPOINT, EndpointSource::Default)?
    };

    let credential = if let Some(c) = &inputs.credential {
        Some(c.clone())
    } else if let Some(path) = cfg_path.as_deref() {
        sky_cfg(path)?
            .and_then(|s| s.service_account_token)
            .filter(|t| !t.trim().is_empty())
            .map(|t| token(t, CredentialSource::SkyConfig(path.to_path_buf())))
    } else {
        None
    };

    if let Some(c) = &credential
        && !c.token.expose_secret().starts_with("sky_")
    {
        // The server's bearer middleware ignores tokens without the prefix, so the request
        // would go through unauthenticated; say so once instead of failing later.
        tracing::warn!(
            source = %c.source,
            "the SkyPilot token does not start with `sky_`; the API server will ignore it"
        );
    }
    Ok(Target {
        endpoint,
        credential,
    })
}

/// A credential from a token and where it came from.
pub fn token(raw: String, source: CredentialSource) -> Credential {
    Credential {
        token: SecretString::from(raw.trim().to_string()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve_with(
        flag: Option<&str>,
        credential: Option<Credential>,
        env: &[(&str, &str)],
        home: Option<&Path>,
    ) -> Result<Target> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = move |k: &str| env.get(k).cloned();
        resolve(&Inputs {
            endpoint: flag,
            credential,
            env: &get,
            home: home.map(Path::to_path_buf),
        })
    }

    #[test]
    fn endpoint_precedence() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".sky")).unwrap();
        std::fs::write(
            home.path().join(".sky/config.yaml"),
            "api_server:\n  endpoint: http://cfg.example:1/\n  service_account_token: sky_cfg\n",
        )
        .unwrap();
        let t = resolve_with(None, None, &[], Some(home.path())).unwrap();
        assert_eq!(t.endpoint.to_string(), "http://cfg.example:1");
        assert!(matches!(t.endpoint.source, EndpointSource::SkyConfig(_)));
        assert!(matches!(
            t.credential.unwrap().source,
            CredentialSource::SkyConfig(_)
        ));

        let t = resolve_with(
            None,
            None,
            &[(ENV_ENDPOINT, "http://env:2")],
            Some(home.path()),
        )
        .unwrap();
        assert_eq!(t.endpoint.to_string(), "http://env:2");
        let t = resolve_with(
            Some("http://flag:3/"),
            None,
            &[(ENV_ENDPOINT, "http://env:2")],
            Some(home.path()),
        )
        .unwrap();
        assert_eq!(t.endpoint.to_string(), "http://flag:3");
        assert_eq!(t.endpoint.source, EndpointSource::Flag);

        let empty = tempfile::tempdir().unwrap();
        let t = resolve_with(None, None, &[], Some(empty.path())).unwrap();
        assert_eq!(t.endpoint.to_string(), "http://127.0.0.1:46580");
        assert!(t.credential.is_none());
    }

    #[test]
    fn a_provided_token_wins_over_the_sky_config() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".sky")).unwrap();
        std::fs::write(
            home.path().join(".sky/config.yaml"),
            "api_server:\n  service_account_token: sky_cfg\n",
        )
        .unwrap();
        let provided = token("sky_given".into(), CredentialSource::Provided("$X".into()));
        let t = resolve_with(None, Some(provided), &[], Some(home.path())).unwrap();
        let c = t.credential.unwrap();
        assert_eq!(c.token.expose_secret(), "sky_given");
        assert!(!format!("{c:?}").contains("sky_given"));
        let t = resolve_with(None, None, &[], Some(home.path())).unwrap();
        assert_eq!(t.credential.unwrap().token.expose_secret(), "sky_cfg");
    }

    #[test]
    fn basic_auth_is_split_off_and_hidden() {
        let e = Endpoint::parse(
            "https://ops:s%40cret@sky.example:8443/",
            EndpointSource::Flag,
        )
        .unwrap();
        assert_eq!(e.to_string(), "https://sky.example:8443");
        let (user, pass) = e.basic_auth.as_ref().unwrap();
        assert_eq!(user, "ops");
        assert_eq!(pass.expose_secret(), "s@cret");
        assert!(!format!("{e:?}").contains("cret"));
        assert_eq!(
            e.join("/api/get").as_str(),
            "https://sky.example:8443/api/get"
        );
    }

    #[test]
    fn bad_inputs_say_what_was_expected() {
        let err = Endpoint::parse("127.0.0.1:46580", EndpointSource::Flag).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
        let err = Endpoint::parse("ftp://x", EndpointSource::Env).unwrap_err();
        assert!(
            err.to_string().contains("SKYPILOT_API_SERVER_ENDPOINT"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".sky")).unwrap();
        std::fs::write(
            dir.path().join(".sky/config.yaml"),
            "api_server: [not, a, map]\n",
        )
        .unwrap();
        let err = resolve_with(None, None, &[], Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("config.yaml"), "{err}");
    }
}
