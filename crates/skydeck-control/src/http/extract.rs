//! Extractors whose every refusal is an [`ApiError`]: a JSON body (415 without the JSON media
//! type, 413 past the limit, 400 when it does not parse, 422 naming the field when it does not
//! fit the type), the `{cluster_name}` path segment (400 when it is not UTF-8), and the query
//! string as pairs (each handler checks its own parameters and names the one at fault).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::vllm_args::printable;

/// A JSON body of type `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_type::Essence>().ok())
            .is_some_and(|m| m.is_json());
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as `T`; a value that does not fit names its field (`gpus[1].index`). Every
/// body of this API is an object: serde would read a struct from an array by position, which
/// the document does not allow, so anything else is refused first.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson {
            message: escaped(&e.to_string()),
        })?;
    if !value.is_object() {
        return Err(ApiError::Invalid {
            field: "body".into(),
            message: "the body must be a JSON object".into(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        ApiError::Invalid {
            field: if field == "." { "body".into() } else { field },
            message: escaped(&e.into_inner().to_string()),
        }
    })
}

/// `s` with control characters escaped and cut to a length a message can carry.
pub fn escaped(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(300)
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect();
    if s.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// The `{cluster_name}` path segment, percent-decoded.
#[derive(Debug)]
pub struct ClusterName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClusterName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(ClusterName(name))
    }
}

/// The query string as decoded `(name, value)` pairs, in order.
#[derive(Debug, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        let mut out = Vec::new();
        for piece in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            let k = decode(k).ok_or_else(|| ApiError::BadQuery {
                param: None,
                message: "the query string is not valid percent-encoded UTF-8".into(),
            })?;
            let v = decode(v).ok_or_else(|| ApiError::BadQuery {
                param: Some(k.clone()),
                message: format!(
                    "the value of {} is not valid percent-encoded UTF-8",
                    printable(&k)
                ),
            })?;
            out.push((k, v));
        }
        Ok(QueryPairs(out))
    }
}

impl QueryPairs {
    /// The single value of `name`; a repeated parameter is refused (which one would win is
    /// not obvious).
    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(bad(name, format!("{name} is given more than once")));
        }
        Ok(first)
    }
}

/// A refused query parameter.
pub fn bad(param: &str, message: String) -> ApiError {
    ApiError::BadQuery {
        param: Some(param.to_string()),
        message,
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; `None` when
/// an escape is broken or the bytes are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Media types, just enough to tell JSON (`application/json`, `application/*+json`) apart.
mod mime_type {
    /// A media type without its parameters.
    pub struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let e = s
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if e.contains('/') {
                Ok(Essence(e))
            } else {
                Err(())
            }
        }
    }

    impl Essence {
        /// JSON, or a `+json` suffix type.
        pub fn is_json(&self) -> bool {
            self.0 == "application/json"
                || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(decode("a+b%2Cc").as_deref(), Some("a b,c"));
        assert_eq!(decode("%ff%fe"), None);
        assert_eq!(decode("%4"), None);
    }
}
