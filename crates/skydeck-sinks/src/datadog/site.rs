//! Datadog sites (`DD_SITE`) and their intake URLs.

use url::Url;

/// The sites Datadog documents; the API host of each is `api.` + the site.
pub const SITES: &[&str] = &[
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "uk1.datadoghq.com",
    "ddog-gov.com",
    "us2.ddog-gov.com",
];

/// Where the Datadog API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The site as configured (`datadoghq.eu`) or the proxy URL.
    pub name: String,
    /// The API base URL (`https://api.datadoghq.eu`), without a trailing slash.
    pub base: Url,
}

impl Site {
    /// Parses a site name or a full URL (a proxy, or a local intake in tests). The error lists
    /// the valid sites.
    pub fn parse(raw: &str) -> Result<Site, String> {
        let raw = raw.trim().trim_end_matches('/');
        if raw.starts_with("http://") || raw.starts_with("https://") {
            let base = Url::parse(raw).map_err(|e| format!("Datadog site URL {raw:?}: {e}"))?;
            if base.host().is_none() {
                return Err(format!("Datadog site URL {raw:?} has no host"));
            }
            return Ok(Site {
                name: raw.to_string(),
                base,
            });
        }
        let name = raw.trim_start_matches("app.").to_ascii_lowercase();
        if SITES.contains(&name.as_str()) {
            let base = Url::parse(&format!("https://api.{name}")).expect("a valid host");
            return Ok(Site { name, base });
        }
        Err(format!(
            "unknown Datadog site {raw:?}; expected one of {} or a full https:// URL (a proxy)",
            SITES.join(", ")
        ))
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let base = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{base}{path}"));
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites() {
        assert_eq!(
            Site::parse("datadoghq.eu")
                .unwrap()
                .url("/api/v2/series")
                .as_str(),
            "https://api.datadoghq.eu/api/v2/series"
        );
        assert_eq!(
            Site::parse("us5.datadoghq.com").unwrap().base.as_str(),
            "https://api.us5.datadoghq.com/"
        );
        assert_eq!(
            Site::parse("ddog-gov.com").unwrap().base.as_str(),
            "https://api.ddog-gov.com/"
        );
        assert_eq!(
            Site::parse("http://127.0.0.1:9/proxy/")
                .unwrap()
                .url("/api/v1/validate")
                .as_str(),
            "http://127.0.0.1:9/proxy/api/v1/validate"
        );
        let e = Site::parse("datadog.com").unwrap_err();
        assert!(
            e.contains("datadoghq.eu") && e.contains("datadog.com"),
            "{e}"
        );
    }
}
